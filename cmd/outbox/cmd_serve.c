/* cmd_serve: placeholder until the delivery daemon lands. */
#include <stdio.h>

#include "commands.h"

int
cmd_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "outbox serve: not implemented yet\n");
    return 1;
}
