# cmake/deb_stage.cmake: CPACK_PRE_BUILD_SCRIPTS of `make deb` (issue 17). Runs after the
# install rules filled the staging tree and before the .deb is made, so the Debian-only
# layout below never touches a plain `cmake --install --prefix ...`:
#   /etc/partoo-outbox/outbox.conf      the conffile, from outbox.conf.example;
#   /lib/systemd/system/outbox.service  contrib/outbox.service with the packaged paths
#                                       (/usr/bin/outbox, /etc/partoo-outbox/);
#   /usr/share/doc/partoo-outbox/{copyright,changelog.gz}, which Debian policy requires.
set(src "${CPACK_OBX_SOURCE_DIR}")
set(root "${CPACK_TEMPORARY_INSTALL_DIRECTORY}")
if(NOT IS_DIRECTORY "${root}/usr/bin")
  # Older CMake stage under <dir>/<prefix>; every path below is relative to /.
  message(FATAL_ERROR "deb_stage: no usr/bin in the staging tree ${root}")
endif()

function(obx_paths in out)
  string(REPLACE "/usr/local/" "/usr/" t "${in}")
  string(REPLACE "/etc/outbox/" "/etc/partoo-outbox/" t "${t}")
  set(${out} "${t}" PARENT_SCOPE)
endfunction()

file(READ "${src}/outbox.conf.example" conf)
obx_paths("${conf}" conf)
file(WRITE "${root}/etc/partoo-outbox/outbox.conf" "${conf}")

file(READ "${src}/contrib/outbox.service" unit)
obx_paths("${unit}" unit)
file(REMOVE_RECURSE "${root}/usr/lib/systemd")
file(GLOB rest "${root}/usr/lib/*")
if(NOT rest)
  file(REMOVE_RECURSE "${root}/usr/lib")  # empty once the unit moved
endif()
file(WRITE "${root}/lib/systemd/system/outbox.service" "${unit}")

set(doc "${root}/usr/share/doc/partoo-outbox")
file(COPY_FILE "${src}/cmake/deb/copyright" "${doc}/copyright")
configure_file("${src}/cmake/deb/changelog.in" "${doc}/changelog" @ONLY)
execute_process(COMMAND gzip -9nf "${doc}/changelog" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "deb_stage: gzip of the changelog failed")
endif()
# Files the install rules made with the umask of whoever built: 0644/0755, as in a package.
file(GLOB_RECURSE staged LIST_DIRECTORIES true "${root}/*")
foreach(f ${staged})
  if(IS_DIRECTORY "${f}" OR f MATCHES "/usr/bin/")
    file(CHMOD "${f}" PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
         WORLD_READ WORLD_EXECUTE)
  else()
    file(CHMOD "${f}" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  endif()
endforeach()
