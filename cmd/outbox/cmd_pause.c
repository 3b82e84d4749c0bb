/* outbox pause|resume: hold a channel's messages, and let them go again (SPEC §13). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "buf.h"
#include "store_dash.h"

#define PAUSE_HELP                                                                           \
    "A paused channel's messages are held: serve does not send them, they use no attempt,\n" \
    "and the time they spend held does not count toward max_age. `outbox status`,\n"         \
    "GET /v1/stats and /metrics show the holds. --tenant is refused: a whole tenant is\n"    \
    "not paused yet; pause its channels (`outbox tenant ls` lists them).\n\n" CLI_COMMON_HELP

static int
pause_resume(int argc, char **argv, int pause)
{
    const char *channel = NULL, *tenant = NULL, *reason = NULL;
    struct cli_opt opts[] = {
        {"channel", &channel, NULL, 1}, {"tenant", &tenant, NULL}, {"reason", &reason, NULL}, {0}};
    struct cli c = {.command = pause ? "pause" : "resume",
                    .usage = pause ? "usage: outbox pause --channel C [--reason TEXT]\n\n"
                                     "Holds every queued message of channel C until `outbox "
                                     "resume`.\n" PAUSE_HELP
                                   : "usage: outbox resume --channel C\n\n"
                                     "Ends the hold of channel C; its messages are sent "
                                     "again.\n" PAUSE_HELP,
                    .postgresql_ok = 1};
    struct obx_store *st = NULL;
    int rc, changed = 0;
    enum obx_err err;

    /* A tenant alone must get the tenant message, not "--channel is required". */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--tenant") == 0 || strncmp(argv[i], "--tenant=", 9) == 0)
            opts[0].required = 0;
    if (!cli_start(&c, argc, argv, opts, 0, 0, &rc))
        goto out;
    if (tenant) {
        cli_error(&c, "--tenant: a whole tenant is not paused yet; pause its channels with "
                      "--channel (`outbox tenant ls` lists them)");
        rc = CLI_USAGE;
        goto out;
    }
    if (!channel || !*channel || strlen(channel) > 255 || (reason && strlen(reason) > 255)) {
        cli_error(&c, "--channel must be 1..255 bytes (and --reason at most 255)");
        rc = CLI_USAGE;
        goto out;
    }
    rc = cli_open_store(&c, 0, &st);
    if (rc != CLI_OK)
        goto out;
    if (pause) {
        err = obx_store_dash_pause(st, OBX_PAUSE_CHANNEL, channel, reason ? reason : "cli", "cli",
                                   &changed);
    } else {
        err = obx_store_dash_resume(st, OBX_PAUSE_CHANNEL, channel, "cli");
        changed = err == OBX_OK;
        if (err == OBX_ENOTFOUND)
            err = OBX_OK;
    }
    if (err != OBX_OK) {
        cli_error(&c, "%s", obx_strerror(err));
        rc = CLI_FAIL;
    } else if (c.json) {
        struct obx_buf b;

        obx_buf_init(&b, 4096);
        if (obx_buf_puts(&b, "{\"channel_id\":") == OBX_OK &&
            obx_buf_json_str(&b, channel) == OBX_OK &&
            obx_buf_printf(&b, ",\"paused\":%s,\"changed\":%s}\n", pause ? "true" : "false",
                           changed ? "true" : "false") == OBX_OK)
            fputs(obx_buf_str(&b), stdout);
        obx_buf_release(&b);
    } else {
        printf("channel %s %s\n", channel,
               pause ? (changed ? "paused" : "was already paused")
                     : (changed ? "resumed" : "was not paused"));
    }
out:
    obx_store_free(st);
    cli_release(&c);
    return rc;
}

int
cmd_pause(int argc, char **argv)
{
    return pause_resume(argc, argv, 1);
}

int
cmd_resume(int argc, char **argv)
{
    return pause_resume(argc, argv, 0);
}
