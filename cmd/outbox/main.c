/* outbox: one binary, subcommands dispatched through a table. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "outbox.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"serve", cmd_serve, "run the delivery daemon (and its HTTP listeners)"},
    {"migrate", cmd_migrate, "create or upgrade the database schema"},
    {"migrate-to", cmd_migrate_to, "move a SQLite outbox into PostgreSQL, audit chain included"},
    {"enqueue", cmd_enqueue, "add messages (flags for one, JSON Lines on stdin for many)"},
    {"status", cmd_status, "counts per channel and state, oldest queued, last error"},
    {"ls", cmd_ls, "list messages, newest first"},
    {"show", cmd_show, "one message with its transitions and attempts"},
    {"retry", cmd_retry, "send failed (or unconfirmed) messages again"},
    {"cancel", cmd_cancel, "cancel a queued message"},
    {"pause", cmd_pause, "hold a channel's messages (nothing sent, no attempt used)"},
    {"resume", cmd_resume, "end a channel's hold"},
    {"audit", cmd_audit, "export attempts and transitions (jsonl or csv)"},
    {"purge", cmd_purge, "delete finished messages older than a duration"},
    {"inbox", cmd_inbox, "list replies written by Partoo users"},
    {"doctor", cmd_doctor, "check configuration, database, disk, listeners and keys"},
    {"tenant", cmd_tenant, "add, change, remove or list tenants (Partoo organisations)"},
    {"backup", cmd_backup, "write a consistent copy of the database while serve runs"},
    {"version", cmd_version, "print the version"},
    {NULL, NULL, NULL},
};

static void
usage(FILE *out)
{
    fprintf(out, "usage: outbox <command> [options]\n\n"
                 "Guaranteed delivery of messages into a Partoo custom channel.\n\nCommands:\n");
    for (const struct command *c = commands; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out, "\nRun 'outbox <command> --help' for a command's options.\n");
}

int
main(int argc, char **argv)
{
    /* The database, its -wal/-shm and backups hold every message: owner only (0600), also
       outside systemd, and stricter than the unit's UMask=0027. */
    umask(077);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(1, argv + 1);
    for (const struct command *c = commands; c->name; c++)
        if (strcmp(argv[1], c->name) == 0)
            return c->fn(argc - 1, argv + 1);
    fprintf(stderr, "outbox: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
