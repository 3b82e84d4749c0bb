/*
 * cli: what every subcommand shares: option parsing (per-command options, the
 * common --db/--config/--json/--help, and any configuration key as a flag),
 * configuration loading, opening the store, aligned tables and readable times.
 *
 * Exit codes (SPEC §6): 0 success, 1 failure, 2 usage error.
 */
#ifndef OBX_CLI_H
#define OBX_CLI_H

#include <stdio.h>

#include "config.h"
#include "store.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* A repeatable option's values in the order given (`--channel A --channel B`). */
struct cli_list {
    const char **v; /* room for max values, provided by the command; borrowed from argv */
    int n;
    int max; /* one more is a usage error */
};

/* One command-specific option. Exactly one of value/flag/list is set. */
struct cli_opt {
    const char *name;      /* without the leading dashes */
    const char **value;    /* takes an argument: where to store it (borrowed from argv) */
    int *flag;             /* no argument: set to 1 */
    int required;          /* a usage error (exit 2) when missing; see cli.required_with_any */
    struct cli_list *list; /* takes an argument, may be repeated: every value */
};

#define CLI_MAX_POSITIONAL 4
#define CLI_MAX_CONFIG_FLAGS 32

struct cli {
    const char *command;     /* e.g. "enqueue" */
    const char *usage;       /* the command's full --help text */
    struct obx_config cfg;   /* effective configuration after cli_load_config */
    int json;                /* --json */
    int help;                /* --help */
    const char *config_file; /* --config, else OUTBOX_CONFIG, else none */
    /* Required options are required only once any option of the table is given (enqueue:
       flags describe one message; without any, lines come on stdin). */
    int required_with_any;
    const char *positional[CLI_MAX_POSITIONAL];
    int npositional;
    struct {
        const char *key; /* borrowed from argv, dashes turned into '_' in key_buf */
        const char *value;
        char key_buf[64];
    } flags[CLI_MAX_CONFIG_FLAGS];
    int nflags;
    int postgresql_ok; /* the command works on a PostgreSQL db (migrate, so far) */
};

/*
 * Parses argv (argv[0] is the command name). Returns CLI_OK, or CLI_USAGE after
 * printing the problem to stderr. c->help set means: print usage and exit 0.
 */
int cli_parse(struct cli *c, int argc, char **argv, const struct cli_opt *opts);

/*
 * Builds a configuration from defaults, the file, OUTBOX_* and the flags of c,
 * then validates it. Used at start and again on SIGHUP. Errors go to err.
 */
enum obx_err cli_build_config(const struct cli *c, struct obx_config *out, struct obx_buf *err);

/* Prints why this command cannot work on c->cfg.db, a PostgreSQL URI (shown without its
 * password); returns CLI_FAIL. */
int cli_refuse_postgresql(const struct cli *c);

/* Loads defaults, the file, OUTBOX_* and flags into c->cfg. Prints errors; CLI_OK or CLI_FAIL. */
int cli_load_config(struct cli *c);

/* Opens the store at c->cfg.db (migrating unless no_migrate). Prints errors. */
int cli_open_store(struct cli *c, int no_migrate, struct obx_store **out /* OUT */);

/* The same, tuned for bulk writes (64 MiB cache, checkpoints every 20000 WAL pages). */
int cli_open_bulk_store(struct cli *c, struct obx_store **out /* OUT */);

/* Prints "outbox <command>: <message>" to stderr. */
void cli_error(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Frees what cli_load_config allocated. */
void cli_release(struct cli *c);

/* Parses an RFC 3339 time or a duration meaning "that long ago" (SPEC §9). */
int cli_parse_time(const char *s, int64_t now_ms, int64_t *out_ms /* OUT */);

/* "3m12s", "2h5m", "4d3h"; n >= 16. */
void cli_format_age(int64_t ms, char *out, size_t n);
/* "2026-11-24 10:00:00" local-free UTC, or "-" for 0; n >= 24. */
void cli_format_time(int64_t at_ms, char *out, size_t n);

/*
 * Text from producers, Partoo users and Partoo itself must not drive the operator's terminal
 * (ESC sequences can rewrite the screen, set the title, or worse). cli_safe_dup returns a
 * copy (caller frees with obx_free; NULL when out of memory) in which C0 controls, DEL, C1
 * controls (U+0080..U+009F) and bytes that are not UTF-8 are written as visible escapes
 * (\x1b, \u009b); tab and newline are kept only with keep_layout. cli_printf_safe formats
 * and writes such a text with tab and newline kept. --json output does not use them: the
 * JSON writer escapes control characters itself.
 */
char *cli_safe_dup(const char *s, int keep_layout);
void cli_printf_safe(FILE *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A simple aligned table: add rows of strings, then print. Cells are copied, made safe
   for a terminal by cli_safe_dup (one line each). */
struct cli_table {
    int ncols;
    char **cells; /* row-major */
    int nrows;    /* including the header row */
    int cap;
};

int cli_table_init(struct cli_table *t, int ncols, const char *const *headers);
int cli_table_add(struct cli_table *t, const char *const *cells);
void cli_table_print(const struct cli_table *t, FILE *out);
void cli_table_release(struct cli_table *t);


/*
 * The common start of a command: parse, answer --help, check required options
 * and the number of positional arguments (usage errors, exit 2, before any
 * configuration is read), load the configuration. Returns 1 to go on; 0 to stop
 * with *exit_code (usage printed on --help, errors printed otherwise).
 */
int cli_start(struct cli *c, int argc, char **argv, const struct cli_opt *opts, int min_pos,
              int max_pos, int *exit_code);
/* Prints {"channel_id":..,"external_message_id":..,"<name>":"<value>"} and a newline. */
void cli_print_key_json(const char *channel, const char *ext_id, const char *name,
                        const char *value);
#define CLI_MIB (INT64_C(1024) * 1024)
#define CLI_GIB (CLI_MIB * 1024)

/* "512 B", "3.4 KiB", "12.0 MiB", "1.5 GiB" into out[size]. */
void cli_format_bytes(int64_t n, char *out, size_t size);
/* Size of a file in bytes; 0 when it does not exist. */
int64_t cli_file_size(const char *path);
/* The directory part of path ("." when there is none) into out[size]. */
void cli_dir_of(const char *path, char *out, size_t size);

#endif
