/* cmd_serve: runs the daemon (lib/server.c) with the CLI's configuration sources. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "pg.h"
#include "commands.h"
#include "server.h"

extern char **environ;

static const char usage_text[] =
    "usage: outbox serve [--print-config] [options]\n\n"
    "Runs the delivery daemon: drains the outbox to Partoo with retries, pacing and\n"
    "per-conversation order. Applies pending migrations first. One serve per database.\n"
    "The Partoo API key comes from OUTBOX_PARTOO_API_KEY or partoo_api_key_file (the\n"
    "implicit tenant `default`); tenants added with `outbox tenant` bring their own.\n\n"
    "Signals: SIGTERM/SIGINT drain in-flight requests (up to shutdown_timeout) and exit 0;\n"
    "SIGHUP reloads the configuration (an invalid one is logged and ignored, and so is\n"
    "one without api_token while api_listen is not loopback); keys read only at start\n"
    "(listeners, ca_file, timeouts, synchronous, audit_key_file) are named in a warning.\n\n"
    "With a PostgreSQL db (postgresql://..., migrated by `outbox migrate`), any number of\n"
    "serve processes may share it (node_name, node_lease); so far they deliver, take\n"
    "enqueues and webhooks and serve the tenants of `outbox tenant`; the read routes,\n"
    "the reply relay and the periodic jobs are SQLite's only.\n\n"
    "  --print-config     print the effective configuration (secrets masked) and exit\n\n" CLI_COMMON_HELP;

/* Builds the configuration, secrets included; used at start and on SIGHUP. */
static enum obx_err
load_all(void *ctx, struct obx_config *out, struct obx_buf *err)
{
    const struct cli *c = ctx;
    enum obx_err e = cli_build_config(c, out, err);

    if (e == OBX_OK)
        e = obx_config_load_secrets(out, environ, err);
    /* No key is no error: tenants (SPEC §11) bring their own, and `status` names the
     * channels that wait for one. */
    if (e != OBX_OK)
        obx_config_release(out);
    return e;
}

int
cmd_serve(int argc, char **argv)
{
    int print_config = 0;
    struct cli_opt opts[] = {{"print-config", NULL, &print_config}, {0}};
    /* On PostgreSQL, serve runs the delivery core (lib/server.c, start_pg); --print-config
     * shows the URI without its password. */
    struct cli c = {.command = "serve", .usage = usage_text, .postgresql_ok = 1};
    struct obx_config cfg;
    struct obx_buf err;
    int rc;

    obx_buf_init(&err, 4096);
    memset(&cfg, 0, sizeof cfg);
    if (!cli_start(&c, argc, argv, opts, 0, 0, &rc))
        goto out;
    if (print_config) {
        /* Shows what serve would run with; a missing key is shown as unset, not an error. */
        if (obx_config_load_secrets(&c.cfg, environ, &err) != OBX_OK) {
            cli_error(&c, "%s", obx_buf_str(&err));
            rc = CLI_FAIL;
            goto out;
        }
        obx_config_print(&c.cfg, stdout);
        goto out;
    }
    if (load_all(&c, &cfg, &err) != OBX_OK) {
        cli_error(&c, "%s", obx_buf_str(&err));
        rc = CLI_FAIL;
        goto out;
    }
    rc = obx_server_run(&cfg, load_all, &c) == OBX_OK ? CLI_OK : CLI_FAIL;
out:
    obx_config_release(&cfg);
    obx_buf_release(&err);
    cli_release(&c);
    return rc;
}
