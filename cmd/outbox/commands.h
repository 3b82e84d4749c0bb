/* commands: the subcommands of `outbox`, each `int cmd_<name>(int argc, char **argv)`. */
#ifndef OBX_COMMANDS_H
#define OBX_COMMANDS_H

int cmd_serve(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_enqueue(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_retry(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_pause(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_purge(int argc, char **argv);
int cmd_inbox(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_tenant(int argc, char **argv);
int cmd_migrate_to(int argc, char **argv);

/* Help text shared by every command's --help. */
#define CLI_COMMON_HELP                                                                    \
    "Common options:\n"                                                                    \
    "  --db PATH          database file (config key db; default outbox.db)\n"              \
    "  --config FILE      configuration file (default: $OUTBOX_CONFIG, else none)\n"       \
    "  --KEY VALUE        any configuration key, e.g. --rate-limit 120/min; not the\n"     \
    "                     secret ones (api_token, webhook_path_secret, ...): those come\n" \
    "                     from OUTBOX_<KEY> or the file, never the visible command line\n" \
    "  --json             machine-readable output\n"                                       \
    "  --help             this help\n"                                                     \
    "Tables and show print control characters of stored text as escapes (\\x1b);\n"        \
    "--json output keeps the exact text.\n"                                                \
    "Exit status: 0 success, 1 failure, 2 usage error.\n"

#endif
