/* outbox pause|resume: hold a channel's messages, and let them go again (SPEC §13). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "buf.h"
#include "store_dash.h"
#include "store_tenant.h"

#define PAUSE_HELP                                                                            \
    "A paused channel's or tenant's messages are held: serve does not send them, they use\n"  \
    "no attempt, and the time they spend held does not count toward max_age. A tenant's\n"    \
    "pause holds every channel it owns; `default` is the configured key's tenant (the\n"      \
    "channels no tenant owns). `outbox status`, GET /v1/stats and /metrics show the holds.\n" \
    "Give exactly one of --channel and --tenant.\n\n" CLI_COMMON_HELP

static int
tenant_found(void *ctx, const struct obx_tenant_row *t)
{
    (void)ctx;
    (void)t;
    return 1;
}

static int
pause_resume(int argc, char **argv, int pause)
{
    const char *channel = NULL, *tenant = NULL, *reason = NULL, *scope, *key;
    struct cli_opt opts[] = {
        {"channel", &channel, NULL}, {"tenant", &tenant, NULL}, {"reason", &reason, NULL}, {0}};
    struct cli c = {.command = pause ? "pause" : "resume",
                    .usage = pause ? "usage: outbox pause (--channel C | --tenant T) "
                                     "[--reason TEXT]\n\n"
                                     "Holds every queued message of channel C, or of tenant T, "
                                     "until `outbox resume`.\n" PAUSE_HELP
                                   : "usage: outbox resume (--channel C | --tenant T)\n\n"
                                     "Ends the hold of channel C or tenant T; its messages are "
                                     "sent again.\n" PAUSE_HELP,
                    .postgresql_ok = 1};
    struct obx_store *st = NULL;
    int rc, changed = 0;
    enum obx_err err;

    if (!cli_start(&c, argc, argv, opts, 0, 0, &rc))
        goto out;
    if (!channel == !tenant) {
        cli_error(&c, "give exactly one of --channel C and --tenant T");
        rc = CLI_USAGE;
        goto out;
    }
    if ((channel && (!*channel || strlen(channel) > 255)) ||
        (tenant && (!*tenant || strlen(tenant) > OBX_TENANT_NAME_MAX)) ||
        (reason && strlen(reason) > 255)) {
        cli_error(&c, "--channel must be 1..255 bytes, --tenant 1..64, --reason at most 255");
        rc = CLI_USAGE;
        goto out;
    }
    scope = tenant ? OBX_PAUSE_TENANT : OBX_PAUSE_CHANNEL;
    key = tenant ? tenant : channel;
    rc = cli_open_store(&c, 0, &st);
    if (rc != CLI_OK)
        goto out;
    err = OBX_OK;
    /* A resume needs no tenant: the hold of a removed tenant must still end. */
    if (pause && tenant && strcmp(tenant, "default") != 0)
        err = obx_store_tenant_list(st, tenant, tenant_found, NULL);
    if (err == OBX_ENOTFOUND) {
        cli_error(&c, "no tenant %s (`outbox tenant ls` lists them)", tenant);
        rc = CLI_FAIL;
        goto out;
    }
    if (err == OBX_OK && pause) {
        err = obx_store_dash_pause(st, scope, key, reason ? reason : "cli", "cli", &changed);
    } else if (err == OBX_OK) {
        err = obx_store_dash_resume(st, scope, key, "cli");
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
        if (obx_buf_printf(&b, "{\"scope\":\"%s\",\"%s\":", scope,
                           tenant ? "tenant" : "channel_id") == OBX_OK &&
            obx_buf_json_str(&b, key) == OBX_OK &&
            obx_buf_printf(&b, ",\"paused\":%s,\"changed\":%s}\n", pause ? "true" : "false",
                           changed ? "true" : "false") == OBX_OK)
            fputs(obx_buf_str(&b), stdout);
        obx_buf_release(&b);
    } else {
        printf("%s %s %s\n", scope, key,
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
