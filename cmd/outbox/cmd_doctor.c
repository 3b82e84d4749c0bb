/*
 * cmd_doctor: `outbox doctor`: can this installation run, and what to do when it cannot.
 *
 * doctor runs the checks of doctor_checks[] in order. Each prints one result, ok,
 * warn or FAIL, with what it found and, when not ok, how to fix it. A check whose
 * prerequisite failed reports "skip":
 *
 *   config --+-- database --+-- integrity, schema, db_size
 *            +-- disk, serve, api_listen, webhook_listen, api_key, webhook_key
 *            |   (database --) tenant_keys
 *            `-- partoo (only with --check-api-key, and only when a key is present)
 *
 * Exit status 1 on any FAIL, else 0 (warnings allowed). doctor only reads the
 * database (opening it may replay a WAL left by a crash, as any SQLite client does)
 * and never prints the API key.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cli.h"
#include "pg.h"
#include "commands.h"
#include "err.h"
#include "httpd.h"
#include "log.h"
#include "mem.h"
#include "migrate.h"
#include "partoo_request.h"
#include "secretbox.h"
#include "signature.h"
#include "store_file.h"
#include "store_query.h"
#include "store_tenant.h"

extern char **environ;

#define DISK_FAIL_BYTES (100 * CLI_MIB) /* below this, the next commits may fail */
#define DISK_WARN_BYTES CLI_GIB
#define DISK_WARN_PERCENT 10
#define QUOTA_WARN_PERCENT 80
#define WAL_WARN_BYTES CLI_GIB /* a WAL this large means checkpoints cannot finish */
#define PROBE_CHANNEL "outbox-doctor-probe"

/* ---- doctor: results -------------------------------------------------------------------- */

enum { ST_OK = 0, ST_WARN, ST_FAIL, ST_SKIP };
static const char *const status_text[] = {"ok", "warn", "FAIL", "skip"};
static const char *const status_json[] = {"ok", "warn", "fail", "skip"};

struct doctor {
    struct cli *c;
    int cfg_ok;           /* c->cfg holds a valid configuration */
    struct obx_store *db; /* the database, as it is; NULL when it does not open */
    long serve_pid;       /* pid of the serve holding <db>.lock; 0 none; -1 unknown */
    int probe;            /* --check-api-key */
    int counts[4];        /* results per status */
    int json_failed;      /* could not build the JSON document (out of memory) */
    struct obx_buf json;  /* --json: the elements of "checks" so far */
};

/* Appends one check to the JSON array. */
static void
json_result(struct doctor *d, const char *name, int status, const char *msg, const char *fix)
{
    struct obx_buf *b = &d->json;
    enum obx_err err = obx_buf_puts(b, b->len ? ",{\"name\":" : "{\"name\":");

    if (err == OBX_OK)
        err = obx_buf_json_str(b, name);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"status\":\"%s\",\"message\":", status_json[status]);
    if (err == OBX_OK)
        err = obx_buf_json_str(b, msg);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"fix\":");
    if (err == OBX_OK)
        err = fix ? obx_buf_json_str(b, fix) : obx_buf_puts(b, "null");
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}");
    if (err != OBX_OK)
        d->json_failed = 1;
}

/* Records and prints one result. fix (may be NULL) says what to do; shown unless ok. */
static void report(struct doctor *d, const char *name, int status, const char *fix, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

static void
report(struct doctor *d, const char *name, int status, const char *fix, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' '; /* one line per check */
    if (status == ST_OK)
        fix = NULL;
    d->counts[status]++;
    if (d->c->json) {
        json_result(d, name, status, msg, fix);
        return;
    }
    printf("%-4s  %-14s %s", status_text[status], name, msg);
    if (fix)
        printf(" -- fix: %s", fix);
    putchar('\n');
    fflush(stdout);
}

/* ---- doctor: configuration and database ------------------------------------------------- */

static void
check_config(struct doctor *d, const char *name)
{
    struct cli *c = d->c;
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    if (cli_build_config(c, &c->cfg, &err) == OBX_OK) {
        d->cfg_ok = 1;
        obx_log_setup(c->cfg.log_level, c->cfg.log_format, NULL);
        report(d, name, ST_OK, NULL, "%s%s%s, OUTBOX_* variables and flags are valid",
               c->config_file ? "file '" : "no file (defaults)",
               c->config_file ? c->config_file : "", c->config_file ? "'" : "");
    } else {
        report(d, name, ST_FAIL,
               "correct the key named (see outbox.conf.example and 'outbox serve "
               "--print-config'); the other checks need a valid configuration",
               "%s", obx_buf_str(&err));
    }
    obx_buf_release(&err);
}

static void
check_database(struct doctor *d, const char *name)
{
    const char *path = d->c->cfg.db;
    char msg[512], dir[PATH_MAX], size[32], fix[PATH_MAX + 128];
    struct stat sb;

    snprintf(fix, sizeof fix,
             "run 'outbox migrate --db %s' to create it, or point db / --db at the existing "
             "database",
             path);
    if (stat(path, &sb) != 0) {
        report(d, name, ST_FAIL, fix, "cannot find database '%s': %s", path, strerror(errno));
        return;
    }
    if (!S_ISREG(sb.st_mode) || !obx_store_file_has_header(path)) {
        report(d, name, ST_FAIL,
               "point db / --db at the outbox database, or restore it from a backup",
               "'%s' is not an SQLite database file", path);
        return;
    }
    if (obx_store_file_open(path, &d->db, msg, sizeof msg) != OBX_OK) {
        report(d, name, ST_FAIL, "check the file's permissions and the directory's",
               "cannot open '%s': %s", path, msg);
        return;
    }
    cli_dir_of(path, dir, sizeof dir);
    cli_format_bytes((int64_t)sb.st_size, size, sizeof size);
    if (access(path, W_OK) != 0 || access(dir, W_OK) != 0)
        report(d, name, ST_WARN,
               "run doctor as the service user (e.g. sudo -u outbox), or give "
               "that user write access to the file and its directory",
               "'%s' (%s) is not writable by this user; serve needs to write the file and "
               "create files in '%s'",
               path, size, dir);
    else
        report(d, name, ST_OK, NULL, "'%s' opens (%s)", path, size);
}

/*
 * The database, its -wal/-shm/-journal and the key files hold messages and secrets: files
 * group or other can read are a warning (serve creates them 0600, under umask 077).
 */
static void
check_permissions(struct doctor *d, const char *name)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    const struct obx_config *cfg = &d->c->cfg;
    char loose[1024] = "", path[PATH_MAX + 16], fix[1200];
    size_t used = 0;
    struct stat sb;

    const char *keys[] = {cfg->partoo_api_key_file, cfg->audit_key_file};
    const size_t nsuffixes = sizeof suffixes / sizeof suffixes[0];

    for (size_t i = 0; i < nsuffixes + sizeof keys / sizeof keys[0]; i++) {
        int n;
        if (i < nsuffixes)
            n = snprintf(path, sizeof path, "%s%s", cfg->db, suffixes[i]);
        else if (keys[i - nsuffixes])
            n = snprintf(path, sizeof path, "%s", keys[i - nsuffixes]);
        else
            continue;
        if (n < 0 || (size_t)n >= sizeof path || stat(path, &sb) != 0 || !(sb.st_mode & 077))
            continue;
        n = snprintf(loose + used, sizeof loose - used, "%s'%s' (%03o)", used ? ", " : "", path,
                     (unsigned)(sb.st_mode & 0777));
        if (n > 0 && (size_t)n < sizeof loose - used)
            used += (size_t)n;
    }
    if (!used) {
        report(d, name, ST_OK, NULL, "the database files are readable by their owner only");
        return;
    }
    snprintf(fix, sizeof fix,
             "chmod 600 each file named (and keep serve's umask 077); "
             "anyone who can read them reads every message");
    report(d, name, ST_WARN, fix, "readable by group or others: %s", loose);
}

static void
check_integrity(struct doctor *d, const char *name)
{
    static const char fix[] = "stop serve, keep a copy of the damaged file, restore the latest "
                              "'outbox backup' (or salvage rows with sqlite3 '.recover'); see "
                              "docs/operations.md";
    char msg[512];
    int n = 0, ok = 0;
    enum obx_err err = obx_store_file_quick_check(d->db, &ok, &n, msg, sizeof msg);

    if (err == OBX_OK && ok)
        report(d, name, ST_OK, NULL, "PRAGMA quick_check: ok");
    else if (err == OBX_OK)
        report(d, name, ST_FAIL, fix, "PRAGMA quick_check found %s%d problem%s, the first: %s",
               n >= 100 ? "at least " : "", n, n == 1 ? "" : "s", msg[0] ? msg : "?");
    else
        report(d, name, ST_FAIL, fix, "the database cannot be read: %s", msg);
}

static void
check_schema(struct doctor *d, const char *name)
{
    int version = 0, latest = obx_migrate_latest();

    if (obx_store_file_schema_version(d->db, &version) != OBX_OK)
        report(d, name, ST_FAIL, "see the integrity check", "cannot read the schema version: %s",
               obx_store_file_errmsg(d->db));
    else if (version == latest)
        report(d, name, ST_OK, NULL, "schema version %d, this binary's", version);
    else if (version > latest)
        report(d, name, ST_FAIL,
               "upgrade outbox to the release that migrated this database (an older binary "
               "refuses it)",
               "schema version %d is newer than this binary's (%d, outbox " OBX_VERSION ")",
               version, latest);
    else
        report(d, name, ST_FAIL,
               "run outbox migrate (after 'outbox backup'); serve also migrates at start",
               "schema version %d is older than this binary's (%d)%s", version, latest,
               version == 0 ? ": the database is empty" : "");
}

/* ---- doctor: space ------------------------------------------------------------------------ */

static void
check_disk(struct doctor *d, const char *name)
{
    char dir[PATH_MAX], avail_s[32], total_s[32];
    struct statvfs vs;
    int64_t avail, total, pct;
    int status;

    cli_dir_of(d->c->cfg.db, dir, sizeof dir);
    if (statvfs(dir, &vs) != 0) {
        report(d, name, ST_FAIL,
               "create the directory (StateDirectory=outbox does under systemd) or fix db",
               "cannot inspect '%s': %s", dir, strerror(errno));
        return;
    }
    avail = (int64_t)vs.f_bavail * (int64_t)vs.f_frsize;
    total = (int64_t)vs.f_blocks * (int64_t)vs.f_frsize;
    pct = total > 0 ? avail * 100 / total : 100;
    cli_format_bytes(avail, avail_s, sizeof avail_s);
    cli_format_bytes(total, total_s, sizeof total_s);
    status = avail < DISK_FAIL_BYTES                              ? ST_FAIL
             : avail < DISK_WARN_BYTES || pct < DISK_WARN_PERCENT ? ST_WARN
                                                                  : ST_OK;
    report(d, name, status,
           status == ST_FAIL ? "free space now: on a full disk the API answers 503 and delivery "
                               "cannot record results; 'outbox purge' or grow the disk"
                             : "free space or grow the disk; set max_db_size so new messages "
                               "are refused (507) before the disk fills",
           "%s free of %s (%lld%%) on the filesystem of '%s'", avail_s, total_s, (long long)pct,
           dir);
}

static void
check_db_size(struct doctor *d, const char *name)
{
    const struct obx_config *cfg = &d->c->cfg;
    char wal[PATH_MAX + 8], used_s[32], wal_s[32], quota_s[32];
    int64_t used = 0, wal_bytes, pct = 0;

    snprintf(wal, sizeof wal, "%s-wal", cfg->db);
    wal_bytes = cli_file_size(wal);
    /* The quota counts pages, as the store does when it refuses a message. */
    if (obx_store_query_db_bytes(d->db, &used) != OBX_OK)
        used = cli_file_size(cfg->db);
    cli_format_bytes(used, used_s, sizeof used_s);
    cli_format_bytes(wal_bytes, wal_s, sizeof wal_s);
    cli_format_bytes(cfg->max_db_size, quota_s, sizeof quota_s);
    if (cfg->max_db_size > 0)
        pct = used * 100 / cfg->max_db_size;
    if (cfg->max_db_size > 0 && used >= cfg->max_db_size)
        report(d, name, ST_FAIL,
               "let delivery and retention free space, 'outbox purge --older-than 7d', or "
               "raise max_db_size",
               "database %s reached max_db_size %s: new messages are refused (API 507, CLI "
               "error)",
               used_s, quota_s);
    else if (cfg->max_db_size > 0 && pct >= QUOTA_WARN_PERCENT)
        report(d, name, ST_WARN,
               "check that delivery drains; purge old messages or raise max_db_size",
               "database %s is at %lld%% of max_db_size %s", used_s, (long long)pct, quota_s);
    else if (wal_bytes >= WAL_WARN_BYTES)
        report(d, name, ST_WARN,
               "close long-running readers (an open sqlite3 shell, a stuck backup); the WAL is "
               "reused after the next checkpoint",
               "the WAL is %s: checkpoints cannot complete", wal_s);
    else if (cfg->max_db_size > 0)
        report(d, name, ST_OK, NULL, "database %s (%lld%% of max_db_size %s), WAL %s", used_s,
               (long long)pct, quota_s, wal_s);
    else
        report(d, name, ST_OK, NULL, "database %s, WAL %s, no max_db_size quota", used_s, wal_s);
}

/* ---- doctor: serve and listeners ------------------------------------------------------------ */

/*
 * Who holds an flock on path: the pid (> 0), 0 when nobody, -1 when it cannot be told.
 * Reads /proc/locks, which takes no lock itself: a test flock, even a shared one, could
 * make a serve starting at that instant believe another one runs. Lines are matched on
 * the inode only, as on overlay filesystems the device differs from what stat reports.
 */
static long
lock_holder(const char *path)
{
    char line[256], type[16], mode[16];
    unsigned long ino;
    long pid, holder = 0;
    unsigned maj, min;
    struct stat sb;
    FILE *f;

    if (stat(path, &sb) != 0)
        return errno == ENOENT ? 0 : -1;
    f = fopen("/proc/locks", "r");
    if (!f)
        return -1;
    while (!holder && fgets(line, sizeof line, f)) {
        if (strstr(line, "->"))
            continue; /* a waiter, not a holder */
        if (sscanf(line, "%*d: %15s %*s %15s %ld %x:%x:%lu", type, mode, &pid, &maj, &min, &ino) ==
                6 &&
            strcmp(type, "FLOCK") == 0 && ino == (unsigned long)sb.st_ino)
            holder = pid > 0 ? pid : -1;
    }
    fclose(f);
    return holder;
}

static void
check_serve(struct doctor *d, const char *name)
{
    char lock[PATH_MAX + 8];

    snprintf(lock, sizeof lock, "%s.lock", d->c->cfg.db);
    d->serve_pid = lock_holder(lock);
    if (d->serve_pid > 0)
        report(d, name, ST_OK, NULL, "outbox serve is running (pid %ld holds '%s')", d->serve_pid,
               lock);
    else if (d->serve_pid == 0)
        report(d, name, ST_OK, NULL, "outbox serve is not running on this database");
    else
        report(d, name, ST_WARN, "run doctor where /proc is mounted",
               "cannot tell whether outbox serve runs (/proc/locks unreadable)");
}

/* Splits "host:port" or "[v6]:port" (already validated by the configuration). */
static void
split_listen(const char *listen, char *host, size_t hn, const char **port)
{
    const char *colon = strrchr(listen, ':');

    *port = colon ? colon + 1 : "";
    if (listen[0] == '[')
        snprintf(host, hn, "%.*s", colon ? (int)(colon - listen - 2) : 0, listen + 1);
    else
        snprintf(host, hn, "%.*s", colon ? (int)(colon - listen) : 0, listen);
}

/* Binds (never listens) a socket to host:port. 0 when free, else an errno; *gai on a lookup
 * failure (then the result is -1). */
static int
try_bind(const char *host, const char *port, int *gai /* OUT */)
{
    struct addrinfo hints = {0}, *ai = NULL;
    int fd = -1, one = 1, rc;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    *gai = getaddrinfo(host, port, &hints, &ai);
    if (*gai != 0)
        return -1;
    /* SO_REUSEADDR as libevent's listener does: a port in TIME_WAIT is not "in use". */
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    rc = fd < 0 ? errno : 0;
    if (rc == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        rc = errno;
    if (rc == 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
        rc = errno;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return rc;
}

static void
check_listener(struct doctor *d, const char *name, const char *listen)
{
    char host[256];
    const char *port;
    int gai = 0, rc;

    split_listen(listen, host, sizeof host, &port);
    if (strcmp(port, "0") == 0) {
        report(d, name, ST_OK, NULL, "%s: port 0, a free port is chosen when serve starts", listen);
        return;
    }
    rc = try_bind(host, port, &gai);
    if (rc == 0)
        report(d, name, ST_OK, NULL, "%s is free", listen);
    else if (rc == -1)
        report(d, name, ST_FAIL, "use an address or name this host resolves",
               "%s: cannot resolve '%s': %s", listen, host, gai_strerror(gai));
    else if (rc == EADDRINUSE && d->serve_pid > 0)
        report(d, name, ST_OK, NULL, "%s is in use, by the running outbox serve (pid %ld)", listen,
               d->serve_pid);
    else if (rc == EADDRINUSE)
        report(d, name, ST_WARN, "stop that process or choose another port",
               "%s is in use by another process: serve could not listen there", listen);
    else if (rc == EADDRNOTAVAIL)
        report(d, name, ST_FAIL, "use an address of this host, or 0.0.0.0 / [::]",
               "%s is not an address of this host", listen);
    else if (rc == EACCES)
        report(d, name, ST_WARN, "use a port above 1023, or give serve CAP_NET_BIND_SERVICE",
               "%s needs privileges to bind (a port below 1024)", listen);
    else
        report(d, name, ST_WARN, NULL, "cannot test %s: %s", listen, strerror(rc));
}

static void
check_api_listen(struct doctor *d, const char *name)
{
    const struct obx_config *cfg = &d->c->cfg;

    if (!cfg->api_token && !obx_httpd_is_loopback(cfg->api_listen))
        report(d, name, ST_FAIL, "set api_token (a long random string) or listen on 127.0.0.1",
               "%s is not a loopback address and api_token is unset: serve refuses to start",
               cfg->api_listen);
    else
        check_listener(d, name, cfg->api_listen);
}

static void
check_webhook_listen(struct doctor *d, const char *name)
{
    check_listener(d, name, d->c->cfg.webhook_listen);
}

/* ---- doctor: keys ------------------------------------------------------------------------- */

/* How many tenants the registry holds; 0 when the database does not open or predates it. */
static int64_t
tenant_count(struct doctor *d)
{
    int64_t n = 0, clear = 0;

    if (!d->db || obx_store_tenant_count(d->db, &n, &clear) != OBX_OK)
        return 0;
    return n;
}

static void
check_api_key(struct doctor *d, const char *name)
{
    static const char fix[] = "set OUTBOX_PARTOO_API_KEY (in /etc/outbox/secrets under "
                              "systemd) or partoo_api_key_file, readable by the service user";
    const char *env = getenv("OUTBOX_PARTOO_API_KEY");
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    if (obx_config_load_secrets(&d->c->cfg, environ, &err) != OBX_OK)
        report(d, name, ST_FAIL, fix, "%s", obx_buf_str(&err));
    else if (!d->c->cfg.partoo_api_key && tenant_count(d) > 0)
        report(d, name, ST_OK, NULL,
               "no default key: %lld tenant%s with %s own key%s; messages of channels no "
               "tenant owns wait (outbox status names them)",
               (long long)tenant_count(d), tenant_count(d) == 1 ? " sends" : "s send",
               tenant_count(d) == 1 ? "its" : "their", tenant_count(d) == 1 ? "" : "s");
    else if (!d->c->cfg.partoo_api_key)
        report(d, name, ST_FAIL, fix,
               "no Partoo API key and no tenant: serve starts but sends nothing (add tenants "
               "with 'outbox tenant add' or set the key)");
    else
        report(d, name, ST_OK, NULL, "present (from %s)%s",
               env && *env ? "OUTBOX_PARTOO_API_KEY" : "partoo_api_key_file",
               d->probe ? "" : "; not verified with Partoo (add --check-api-key)");
    obx_buf_release(&err);
}

static void
check_webhook_key(struct doctor *d, const char *name)
{
    const struct obx_config *cfg = &d->c->cfg;
    int sandbox = strstr(cfg->partoo_base_url, "sandbox") != NULL;
    struct obx_verifier *v = NULL;
    const char *what;
    enum obx_err err;

    /* The same choice as lib/webhook.c: file, then inline key, then the default. */
    if (cfg->webhook_public_key_file) {
        what = "webhook_public_key_file";
        err = obx_signature_verifier_from_file(cfg->webhook_public_key_file, &v);
    } else if (cfg->webhook_public_key) {
        what = "webhook_public_key";
        err = obx_signature_verifier_new(cfg->webhook_public_key, &v);
    } else {
        what = sandbox ? "Partoo's sandbox key (default for a sandbox partoo_base_url)"
                       : "Partoo's production key (the default)";
        err = obx_signature_verifier_new(sandbox ? OBX_PARTOO_SANDBOX_KEY_HEX
                                                 : OBX_PARTOO_PROD_KEY_HEX,
                                         &v);
    }
    obx_signature_verifier_free(v);
    if (err == OBX_OK)
        report(d, name, ST_OK, NULL, "%s is an Ed25519 public key", what);
    else if (err == OBX_EIO)
        report(d, name, ST_FAIL, "make the file readable by the service user",
               "cannot read webhook_public_key_file '%s': serve refuses to start",
               cfg->webhook_public_key_file);
    else
        report(d, name, ST_FAIL,
               "use Partoo's published key: 64 hex characters, the base64 line of its PEM, or "
               "a PEM file",
               "%s is not an Ed25519 public key: serve refuses to start", what);
}

/*
 * Tenants' keys (SPEC §11): sealed under secrets_key_file, or a warning that a copy of the
 * database or of a backup reveals them. A sealed key that does not open (no or another
 * secrets_key_file) leaves its tenant unable to send: a failure. The keys are opened in
 * memory only to learn that, wiped at once, and never printed.
 */
static void
check_tenant_keys(struct doctor *d, const char *name)
{
    static const char seal_fix[] =
        "set secrets_key_file to a file of 32 random bytes, owner-only ((umask 077; openssl "
        "rand -hex 32 > FILE)), then give each key again (outbox tenant set NAME "
        "--api-key-file F): it is stored sealed";
    const struct obx_config *cfg = &d->c->cfg;
    uint8_t key[OBX_SECRETBOX_KEY_BYTES];
    struct obx_tenant_conf *t = NULL;
    int64_t n = 0, clear = 0;
    size_t nt = 0, closed = 0;
    struct obx_buf err;
    int have_key = 0;

    obx_buf_init(&err, 4096);
    if (obx_store_tenant_count(d->db, &n, &clear) != OBX_OK) {
        report(d, name, ST_SKIP, NULL, "cannot read the tenant registry (see schema)");
        goto out;
    }
    if (n == 0) {
        report(d, name, ST_OK, NULL, "no tenants: the configured key serves every channel");
        goto out;
    }
    if (cfg->secrets_key_file) {
        if (obx_secretbox_load_key(cfg->secrets_key_file, key, &err) != OBX_OK) {
            report(d, name, ST_FAIL,
                   "fix secrets_key_file (32 raw bytes or 64 hex digits, mode 600)",
                   "%s: sealed tenant keys cannot be opened", obx_buf_str(&err));
            goto out;
        }
        have_key = 1;
    }
    if (n > clear && obx_store_tenant_load(d->db, have_key ? key : NULL, &t, &nt) == OBX_OK)
        for (size_t i = 0; i < nt; i++)
            closed += t[i].api_key == NULL;
    obx_store_tenant_conf_free(t, nt); /* wipes the opened keys */
    if (closed)
        report(d, name, ST_FAIL,
               have_key ? "point secrets_key_file at the key the tenants were sealed with, or "
                          "give their keys again (outbox tenant set NAME --api-key-file F)"
                        : "set secrets_key_file to the key the tenants were sealed with",
               "%zu of %lld tenant key%s cannot be opened%s: those tenants send nothing", closed,
               (long long)n, n == 1 ? "" : "s", have_key ? " with secrets_key_file" : "");
    else if (clear)
        report(
            d, name, ST_WARN, seal_fix,
            "%lld of %lld tenant key%s %s stored in the clear in '%s': a copy of the database or "
            "of a backup reveals %s",
            (long long)clear, (long long)n, n == 1 ? "" : "s", clear == 1 ? "is" : "are", cfg->db,
            clear == 1 ? "it" : "them");
    else
        report(d, name, ST_OK, NULL, "%lld tenant key%s sealed (AES-256-GCM, secrets_key_file)",
               (long long)n, n == 1 ? "" : "s");
out:
    explicit_bzero(key, sizeof key);
    obx_buf_release(&err);
}

/* ---- doctor: asking Partoo ------------------------------------------------------------------ */

static void
check_partoo(struct doctor *d, const char *name)
{
    static const char net_fix[] = "check that this host reaches partoo_base_url (DNS, "
                                  "firewall, proxy, ca_file)";
    const struct obx_config *cfg = &d->c->cfg;
    struct obx_http_opts o = {cfg->connect_timeout_ms, cfg->request_timeout_ms, 1, cfg->ca_file,
                              NULL};
    char errbuf[256];
    int status = 0;
    enum obx_err err;

    if (!cfg->partoo_api_key) {
        report(d, name, ST_SKIP, NULL, "needs an API key");
        return;
    }
    /* POSTs {} to a channel that does not exist: Partoo checks the key first (401/403),
     * then answers 400/404/422, and nothing is created. */
    err = obx_partoo_request_probe(cfg->partoo_base_url, cfg->partoo_api_key, PROBE_CHANNEL, &o,
                                   &status, errbuf, sizeof errbuf);
    if (err != OBX_OK)
        report(d, name, ST_WARN, net_fix, "cannot check the API key: %s", obx_strerror(err));
    else if (status == 0)
        report(d, name, ST_WARN, net_fix, "cannot check the API key: %s", errbuf);
    else if (status == 401 || status == 403)
        report(d, name, ST_FAIL,
               "put a valid key (ORG_ADMIN or PROVIDER rights) in place and reload or restart "
               "outbox (docs/operations.md)",
               "Partoo rejected the API key (HTTP %d)", status);
    else if (status == 400 || status == 404 || status == 422)
        report(d, name, ST_OK, NULL,
               "Partoo accepted the API key (the probe, an empty message to a channel that "
               "does not exist, was answered HTTP %d)",
               status);
    else if (status == 429)
        report(d, name, ST_WARN, "try again in a minute",
               "cannot check the API key: Partoo answered 429 (rate limited)");
    else
        report(d, name, ST_WARN, net_fix, "cannot check the API key: Partoo answered HTTP %d",
               status);
}

/* ---- doctor: the command ------------------------------------------------------------------ */

enum { NEED_CONFIG = 1, NEED_DB = 2, NEED_PROBE = 4 };

static const struct check {
    const char *name;
    int needs;
    void (*run)(struct doctor *d, const char *name);
} doctor_checks[] = {
    {"config", 0, check_config},
    {"database", NEED_CONFIG, check_database},
    {"permissions", NEED_CONFIG | NEED_DB, check_permissions},
    {"integrity", NEED_CONFIG | NEED_DB, check_integrity},
    {"schema", NEED_CONFIG | NEED_DB, check_schema},
    {"disk", NEED_CONFIG, check_disk},
    {"db_size", NEED_CONFIG | NEED_DB, check_db_size},
    {"serve", NEED_CONFIG, check_serve},
    {"api_listen", NEED_CONFIG, check_api_listen},
    {"webhook_listen", NEED_CONFIG, check_webhook_listen},
    {"api_key", NEED_CONFIG, check_api_key},
    {"webhook_key", NEED_CONFIG, check_webhook_key},
    {"tenant_keys", NEED_CONFIG | NEED_DB, check_tenant_keys},
    {"partoo", NEED_CONFIG | NEED_PROBE, check_partoo},
};

static void
run_checks(struct doctor *d)
{
    for (size_t i = 0; i < sizeof doctor_checks / sizeof doctor_checks[0]; i++) {
        const struct check *k = &doctor_checks[i];
        if ((k->needs & NEED_PROBE) && !d->probe)
            continue;
        /* Its checks read a SQLite file; a PostgreSQL URI (and its password) stays unread. */
        if (d->cfg_ok && obx_pg_is_uri(d->c->cfg.db) && k->needs) {
            d->cfg_ok = 0;
            (void)cli_refuse_postgresql(d->c);
            report(d, k->name, ST_FAIL, NULL, "db is a PostgreSQL database");
            continue;
        }
        if ((k->needs & NEED_CONFIG) && !d->cfg_ok)
            report(d, k->name, ST_SKIP, NULL, "needs a valid configuration");
        else if ((k->needs & NEED_DB) && !d->db)
            report(d, k->name, ST_SKIP, NULL, "needs a database that opens");
        else
            k->run(d, k->name);
    }
}

/* Prints the summary (text) or the whole document (--json). Returns the exit code. */
static int
doctor_finish(struct doctor *d)
{
    int fails = d->counts[ST_FAIL], warns = d->counts[ST_WARN];

    if (d->c->json && d->json_failed) {
        cli_error(d->c, "cannot format output: %s", obx_strerror(OBX_ENOMEM));
        return CLI_FAIL;
    }
    if (d->c->json)
        printf("{\"ok\":%s,\"failures\":%d,\"warnings\":%d,\"checks\":[%s]}\n",
               fails ? "false" : "true", fails, warns, obx_buf_str(&d->json));
    else
        printf("\n%s: %d ok, %d warning%s, %d failure%s, %d skipped\n",
               fails ? "NOT READY" : "ready", d->counts[ST_OK], warns, warns == 1 ? "" : "s", fails,
               fails == 1 ? "" : "s", d->counts[ST_SKIP]);
    return fails ? CLI_FAIL : CLI_OK;
}

static const char doctor_usage[] =
    "usage: outbox doctor [--check-api-key] [options]\n\n"
    "Checks that this installation can run, one line per check: ok, warn or FAIL, what is\n"
    "wrong and how to fix it. Checks: the configuration (file, OUTBOX_* and flags); the\n"
    "database file opens, its files (and the key files) are not readable by group or\n"
    "others, PRAGMA quick_check, its schema version against this binary's;\n"
    "free disk space and the database and WAL sizes against max_db_size; whether serve\n"
    "runs; api_listen and webhook_listen (a non-loopback api_listen needs api_token; a port\n"
    "in use by another process is a warning); the Partoo API key is present (never\n"
    "printed); the webhook public key parses; tenants' keys are sealed (secrets_key_file)\n"
    "and open. Only reads the database.\n\n"
    "  --check-api-key    also ask Partoo whether it accepts the key: one POST of {} to a\n"
    "                     channel that does not exist (401/403: rejected)\n\n"
    "Exit status 0 when nothing failed (warnings allowed), 1 otherwise.\n\n" CLI_COMMON_HELP;

int
cmd_doctor(int argc, char **argv)
{
    int probe = 0;
    struct cli_opt opts[] = {{"check-api-key", NULL, &probe}, {0}};
    struct cli c = {.command = "doctor", .usage = doctor_usage};
    struct doctor d = {.c = &c};
    int rc = cli_parse(&c, argc, argv, opts);

    obx_buf_init(&d.json, 1024 * 1024);
    if (rc != CLI_OK)
        goto out;
    if (c.help) {
        fputs(c.usage, stdout);
        goto out;
    }
    if (c.npositional) {
        cli_error(&c, "expected no arguments (see 'outbox doctor --help')");
        rc = CLI_USAGE;
        goto out;
    }
    d.probe = probe;
    run_checks(&d);
    rc = doctor_finish(&d);
out:
    obx_store_free(d.db);
    obx_buf_release(&d.json);
    cli_release(&c);
    return rc;
}
