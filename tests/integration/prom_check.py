#!/usr/bin/env python3
"""prom_check.py: a strict checker of the Prometheus text exposition format 0.0.4.

Usage:
    prom_check.py [FILE]                 check FILE (default stdin); exit 0 when valid
    prom_check.py --get NAME [L=V ...] [--get ...] [FILE]
                                         check, then print, one line per --get, the value
                                         of the series named NAME whose labels are exactly
                                         L=V ... (values as they are after unescaping);
                                         "absent" when there is no such series
    prom_check.py --self-test            feed the checker valid and broken samples

Exit status: 0 valid (or self-test passed), 1 first violation (printed on stderr as
"prom_check: line N: ..."), 2 usage error.

What it enforces, from the format description
(https://prometheus.io/docs/instrumenting/exposition_formats/, text format 0.0.4):
  - UTF-8, lines separated by LF, the last line ends with LF, no CR, no NUL;
  - "# HELP name docstring" with only \\\\ and \\n escapes in the docstring;
  - "# TYPE name counter|gauge|histogram|summary|untyped", before the family's samples;
  - samples: metric_name [ "{" label="value" { "," label="value" } [ "," ] "}" ] value
    [ timestamp ], metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*
    (not starting with "__"), label values escaped with \\\\, \\" and \\n only, values Go
    floats (decimal, exponent, NaN, +Inf, -Inf), timestamps int64 milliseconds;
  - all lines of a family form one group (HELP/TYPE first, then its samples);
  - no duplicate series (same name and label set), no duplicate label name in a sample;
  - histograms: _bucket samples with an "le" label, le strictly increasing and ending in
    "+Inf", cumulative counts non-decreasing, _sum and _count present, _count equal to the
    +Inf bucket (per label set); summaries: quantile in [0, 1], _sum and _count present.
And, stricter than the format (Prometheus naming conventions, as promlint checks them):
  - every family has exactly one non-empty HELP and exactly one TYPE line;
  - no leading or trailing blanks on a line; no colons in metric names (reserved for
    recording rules);
  - counters end in "_total" and are >= 0; other types do not end in "_total";
    "_bucket", "_sum", "_count" are reserved for histogram/summary samples;
  - base units only (no _milliseconds, _ms, _minutes, _kilobytes, _percent, ...);
    a name about a duration/latency ends in "_seconds" (histograms) or mentions it.
"""

import math
import re
import sys

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
SPECIAL_FLOATS = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf, "Inf": math.inf}
TIMESTAMP = re.compile(r"-?[0-9]+")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
BLANKS = " \t"
# Name components that are not base units (or are abbreviations of units).
NON_BASE_UNITS = {
    "milliseconds", "millisecond", "microseconds", "microsecond", "nanoseconds",
    "nanosecond", "minutes", "minute", "hours", "hour", "days", "day", "weeks", "ms", "us",
    "ns", "sec", "secs", "kilobytes", "megabytes", "gigabytes", "terabytes", "kb", "mb",
    "gb", "kib", "mib", "gib", "kbytes", "mbytes", "bits", "percent", "percentage",
    "celsius", "fahrenheit", "grams", "kilograms", "litres", "liters",
}


class Violation(Exception):
    def __init__(self, line, msg):
        super().__init__(msg)
        self.line = line
        self.msg = msg

    def __str__(self):
        return "line %d: %s" % (self.line, self.msg) if self.line else self.msg


def parse_value(tok, lineno, what="value"):
    if tok in SPECIAL_FLOATS:
        return SPECIAL_FLOATS[tok]
    if not FLOAT.fullmatch(tok):
        raise Violation(lineno, "%s %r is not a float (decimal, exponent, NaN, +Inf, -Inf)"
                        % (what, tok))
    return float(tok)


class Family:
    def __init__(self, name, lineno):
        self.name = name
        self.first_line = lineno
        self.help = None
        self.type = None
        self.samples = []  # (lineno, sample_name, labels dict, value)
        self.closed = False


class Checker:
    def __init__(self):
        self.families = {}
        self.order = []
        self.current = None
        self.series = {}  # (name, frozenset(labels)) -> value
        self.nsamples = 0

    # -- family bookkeeping ----------------------------------------------------------
    def family_for_sample(self, name):
        """The family a sample name belongs to (histogram/summary suffixes included)."""
        for suffix, types in (("_bucket", ("histogram",)), ("_sum", ("histogram", "summary")),
                              ("_count", ("histogram", "summary"))):
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                fam = self.families.get(base)
                if fam is not None and fam.type in types:
                    return base
        return name

    def enter(self, name, lineno):
        """Makes `name` the current family; a family seen before must not come back."""
        if self.current is not None and self.current.name == name:
            return self.current
        if self.current is not None:
            self.current.closed = True
        fam = self.families.get(name)
        if fam is None:
            fam = Family(name, lineno)
            self.families[name] = fam
            self.order.append(name)
        elif fam.closed:
            raise Violation(lineno, "lines of family %s are not contiguous (it started at "
                            "line %d and another family came in between)"
                            % (name, fam.first_line))
        self.current = fam
        return fam

    # -- lines ----------------------------------------------------------------------
    def comment(self, line, lineno):
        # "#" then blanks then HELP|TYPE then blanks then the metric name.
        rest = line[1:]
        stripped = rest.lstrip(BLANKS)
        parts = re.split(r"[ \t]+", stripped, maxsplit=1)
        keyword = parts[0] if parts else ""
        if keyword not in ("HELP", "TYPE"):
            return  # a plain comment
        after = parts[1] if len(parts) > 1 else ""
        m = METRIC_NAME.match(after)
        if not m:
            raise Violation(lineno, "# %s without a valid metric name" % keyword)
        name = m.group(0)
        tail = after[m.end():]
        if tail and tail[0] not in BLANKS:
            raise Violation(lineno, "invalid metric name in # %s: %r" % (keyword, after))
        text = tail.lstrip(BLANKS)
        self.check_name(name, lineno)
        fam = self.enter(name, lineno)
        if fam.samples:
            raise Violation(lineno, "# %s of %s after its samples" % (keyword, name))
        if keyword == "HELP":
            if fam.help is not None:
                raise Violation(lineno, "second # HELP for %s" % name)
            fam.help = self.unescape_help(text, lineno)
            if not fam.help.strip():
                raise Violation(lineno, "empty # HELP for %s" % name)
        else:
            if fam.type is not None:
                raise Violation(lineno, "second # TYPE for %s" % name)
            if text not in TYPES:
                raise Violation(lineno, "bad # TYPE %r for %s (counter, gauge, histogram, "
                                "summary, untyped)" % (text, name))
            fam.type = text

    @staticmethod
    def unescape_help(text, lineno):
        out = []
        i = 0
        while i < len(text):
            c = text[i]
            if c == "\\":
                if i + 1 >= len(text):
                    raise Violation(lineno, "HELP ends in a lone backslash")
                n = text[i + 1]
                if n == "\\":
                    out.append("\\")
                elif n == "n":
                    out.append("\n")
                else:
                    raise Violation(lineno, "invalid escape sequence '\\%s' in HELP" % n)
                i += 2
            else:
                out.append(c)
                i += 1
        return "".join(out)

    @staticmethod
    def check_name(name, lineno):
        if ":" in name:
            raise Violation(lineno, "metric name %s contains ':' (reserved for recording "
                            "rules)" % name)

    def sample(self, line, lineno):
        m = METRIC_NAME.match(line)
        if not m:
            raise Violation(lineno, "sample does not start with a valid metric name: %r"
                            % line[:80])
        name = m.group(0)
        self.check_name(name, lineno)
        pos = m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            pos = self.parse_labels(line, pos + 1, labels, lineno, name)
        if pos >= len(line) or line[pos] not in BLANKS:
            raise Violation(lineno, "expected a blank then the value after %s: %r"
                            % (name, line[:120]))
        rest = line[pos:].lstrip(BLANKS)
        toks = re.split(r"[ \t]+", rest)
        if not toks or toks[0] == "":
            raise Violation(lineno, "sample of %s has no value" % name)
        if len(toks) > 2:
            raise Violation(lineno, "trailing junk after the value of %s: %r" % (name, rest))
        value = parse_value(toks[0], lineno)
        if len(toks) == 2 and not TIMESTAMP.fullmatch(toks[1]):
            raise Violation(lineno, "timestamp %r of %s is not an integer" % (toks[1], name))
        famname = self.family_for_sample(name)
        fam = self.enter(famname, lineno)
        if fam.type is None:
            raise Violation(lineno, "sample of %s before (or without) its # TYPE line" % famname)
        if fam.help is None:
            raise Violation(lineno, "sample of %s before (or without) its # HELP line" % famname)
        if fam.type in ("counter", "gauge", "untyped") and name != famname:
            raise Violation(lineno, "sample %s in family %s" % (name, famname))
        if fam.type == "histogram" and name == famname:
            raise Violation(lineno, "histogram %s sample without _bucket/_sum/_count" % name)
        key = (name, frozenset(labels.items()))
        if key in self.series:
            raise Violation(lineno, "duplicate series %s%s" % (name, fmt_labels(labels)))
        self.series[key] = value
        fam.samples.append((lineno, name, labels, value))
        self.nsamples += 1

    @staticmethod
    def parse_labels(line, pos, labels, lineno, name):
        """Parses label pairs after '{'; returns the position after '}'."""
        n = len(line)
        while True:
            while pos < n and line[pos] in BLANKS:
                pos += 1
            if pos < n and line[pos] == "}":
                return pos + 1
            m = LABEL_NAME.match(line, pos)
            if not m:
                raise Violation(lineno, "invalid label name in %s at column %d: %r"
                                % (name, pos + 1, line[pos:pos + 20]))
            lname = m.group(0)
            if lname.startswith("__"):
                raise Violation(lineno, "label name %s is reserved (starts with __)" % lname)
            pos = m.end()
            while pos < n and line[pos] in BLANKS:
                pos += 1
            if pos >= n or line[pos] != "=":
                raise Violation(lineno, "expected '=' after label %s of %s" % (lname, name))
            pos += 1
            while pos < n and line[pos] in BLANKS:
                pos += 1
            if pos >= n or line[pos] != '"':
                raise Violation(lineno, "label value of %s in %s is not quoted" % (lname, name))
            pos += 1
            out = []
            while True:
                if pos >= n:
                    raise Violation(lineno, "unterminated label value of %s in %s"
                                    % (lname, name))
                c = line[pos]
                if c == "\\":
                    if pos + 1 >= n:
                        raise Violation(lineno, "unterminated escape in label %s" % lname)
                    e = line[pos + 1]
                    if e == "\\":
                        out.append("\\")
                    elif e == '"':
                        out.append('"')
                    elif e == "n":
                        out.append("\n")
                    else:
                        raise Violation(lineno, "invalid escape sequence '\\%s' in label %s "
                                        "of %s" % (e, lname, name))
                    pos += 2
                elif c == '"':
                    pos += 1
                    break
                else:
                    out.append(c)
                    pos += 1
            if lname in labels:
                raise Violation(lineno, "label %s twice in a sample of %s" % (lname, name))
            labels[lname] = "".join(out)
            while pos < n and line[pos] in BLANKS:
                pos += 1
            if pos < n and line[pos] == ",":
                pos += 1
                continue
            if pos < n and line[pos] == "}":
                return pos + 1
            raise Violation(lineno, "expected ',' or '}' in the labels of %s at column %d"
                            % (name, pos + 1))

    # -- whole-family rules ------------------------------------------------------------
    def check_family(self, fam):
        name = fam.name
        line = fam.first_line
        if fam.help is None:
            raise Violation(line, "family %s has no # HELP line" % name)
        if fam.type is None:
            raise Violation(line, "family %s has no # TYPE line" % name)
        comps = name.split("_")
        for c in comps:
            if c.lower() in NON_BASE_UNITS:
                raise Violation(line, "%s: '%s' is not a base unit (use _seconds, _bytes, "
                                "ratios instead of percent)" % (name, c))
        if fam.type == "counter":
            if not name.endswith("_total"):
                raise Violation(line, "counter %s does not end in _total" % name)
        elif name.endswith("_total"):
            raise Violation(line, "%s %s ends in _total (counters only)" % (fam.type, name))
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and fam.type in ("counter", "gauge", "untyped"):
                raise Violation(line, "%s %s uses the reserved suffix %s"
                                % (fam.type, name, suffix))
        if fam.type == "histogram" and ("duration" in comps or "latency" in comps) \
                and not name.endswith("_seconds"):
            raise Violation(line, "histogram %s measures time but does not end in _seconds"
                            % name)
        for lineno, sname, labels, value in fam.samples:
            if fam.type == "counter" and not value >= 0:
                raise Violation(lineno, "counter %s has value %r (must be >= 0)"
                                % (sname, value))
            if fam.type == "histogram":
                if sname.endswith("_bucket") and "le" not in labels:
                    raise Violation(lineno, "%s without an le label" % sname)
                if not sname.endswith("_bucket") and "le" in labels:
                    raise Violation(lineno, "%s must not carry an le label" % sname)
                if (sname.endswith("_bucket") or sname.endswith("_count")) and \
                        not value >= 0:
                    raise Violation(lineno, "%s has a negative or NaN count" % sname)
            elif "le" in labels:
                raise Violation(lineno, "le label on a %s sample (%s)" % (fam.type, sname))
            if fam.type == "summary":
                if sname == name and "quantile" not in labels:
                    raise Violation(lineno, "summary sample %s without a quantile label"
                                    % sname)
                if "quantile" in labels:
                    if sname != name:
                        raise Violation(lineno, "quantile label on %s" % sname)
                    q = parse_value(labels["quantile"], lineno, "quantile")
                    if not 0 <= q <= 1:
                        raise Violation(lineno, "quantile %r out of [0, 1]" % labels["quantile"])
            elif "quantile" in labels:
                raise Violation(lineno, "quantile label on a %s sample (%s)" % (fam.type, sname))
        if fam.type == "histogram":
            self.check_histogram(fam)
        if fam.type == "summary":
            self.check_summary(fam)

    @staticmethod
    def group(fam, drop):
        groups = {}
        for lineno, sname, labels, value in fam.samples:
            rest = frozenset((k, v) for k, v in labels.items() if k != drop)
            groups.setdefault(rest, []).append((lineno, sname, labels, value))
        return groups

    def check_histogram(self, fam):
        name = fam.name
        for rest, samples in self.group(fam, "le").items():
            where = "%s%s" % (name, fmt_labels(dict(rest)))
            buckets = [s for s in samples if s[1] == name + "_bucket"]
            sums = [s for s in samples if s[1] == name + "_sum"]
            counts = [s for s in samples if s[1] == name + "_count"]
            line = samples[0][0]
            if not buckets:
                raise Violation(line, "histogram %s has no _bucket samples" % where)
            prev_le = -math.inf
            prev_count = 0.0
            for lineno, _, labels, value in buckets:
                le = parse_value(labels["le"], lineno, "le")
                if math.isnan(le):
                    raise Violation(lineno, "le is NaN in %s" % where)
                if not le > prev_le:
                    raise Violation(lineno, "le %s of %s is not greater than the bucket "
                                    "before" % (labels["le"], where))
                if value < prev_count:
                    raise Violation(lineno, "bucket le=%s of %s has %r < %r of the bucket "
                                    "before (buckets are cumulative)"
                                    % (labels["le"], where, value, prev_count))
                prev_le, prev_count = le, value
            last_line, _, last_labels, inf_count = buckets[-1]
            if last_labels["le"] != "+Inf":
                raise Violation(last_line, "the last bucket of %s is le=%r, not \"+Inf\""
                                % (where, last_labels["le"]))
            if len(sums) != 1:
                raise Violation(line, "histogram %s has %d _sum samples (want 1)"
                                % (where, len(sums)))
            if len(counts) != 1:
                raise Violation(line, "histogram %s has %d _count samples (want 1)"
                                % (where, len(counts)))
            if counts[0][3] != inf_count:
                raise Violation(counts[0][0], "%s_count %r differs from its +Inf bucket %r"
                                % (where, counts[0][3], inf_count))
            if inf_count == 0 and sums[0][3] != 0:
                raise Violation(sums[0][0], "%s_sum is %r with no observations"
                                % (where, sums[0][3]))

    def check_summary(self, fam):
        name = fam.name
        for rest, samples in self.group(fam, "quantile").items():
            where = "%s%s" % (name, fmt_labels(dict(rest)))
            for suffix in ("_sum", "_count"):
                k = [s for s in samples if s[1] == name + suffix]
                if len(k) != 1:
                    raise Violation(samples[0][0], "summary %s has %d %s samples (want 1)"
                                    % (where, len(k), suffix))

    # -- entry point ------------------------------------------------------------------
    def check(self, data):
        if isinstance(data, bytes):
            if b"\0" in data:
                raise Violation(0, "NUL byte in the exposition")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise Violation(0, "not UTF-8: %s" % e)
        else:
            text = data
        if not text:
            raise Violation(0, "empty exposition")
        if not text.endswith("\n"):
            raise Violation(text.count("\n") + 1, "the last line does not end with a line feed")
        if "\r" in text:
            raise Violation(text[: text.index("\r")].count("\n") + 1, "carriage return (CR)")
        lines = text[:-1].split("\n")
        for i, line in enumerate(lines, 1):
            if line == "":
                continue  # empty lines are ignored
            if line[0] in BLANKS or line[-1] in BLANKS:
                raise Violation(i, "leading or trailing blank: %r" % line[:120])
            if line[0] == "#":
                self.comment(line, i)
            else:
                self.sample(line, i)
        if not self.families:
            raise Violation(0, "no metric families")
        for name in self.order:
            self.check_family(self.families[name])
        return self


def fmt_labels(labels):
    if not labels:
        return ""
    esc = lambda v: v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return "{" + ",".join('%s="%s"' % (k, esc(v)) for k, v in sorted(labels.items())) + "}"


def fmt_value(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 2 ** 63:
        return str(int(v))
    return repr(v)


# ---- self-test --------------------------------------------------------------------------

GOOD = """# HELP demo_requests_total Requests, with a \\\\ and a \\n in the help.
# TYPE demo_requests_total counter
demo_requests_total{code="200",path="/a\\"b\\\\c\\nd"} 10
demo_requests_total{code="500",path="/"} 0 1700000000000
# TYPE demo_temperature gauge
# HELP demo_temperature Odd values.
demo_temperature{k="a"} -1.5e3
demo_temperature{k="b"} NaN
demo_temperature{k="c"} +Inf
demo_temperature{k="d",} -Inf

# a plain comment
# HELP demo_request_duration_seconds Latency.
# TYPE demo_request_duration_seconds histogram
demo_request_duration_seconds_bucket{le="0.1"} 1
demo_request_duration_seconds_bucket{le="1"} 3
demo_request_duration_seconds_bucket{le="+Inf"} 3
demo_request_duration_seconds_sum 1.25
demo_request_duration_seconds_count 3
# HELP demo_rpc_seconds A summary.
# TYPE demo_rpc_seconds summary
demo_rpc_seconds{quantile="0.5"} 0.2
demo_rpc_seconds_sum 3
demo_rpc_seconds_count 7
"""

# The example of the format description, with HELP and TYPE added where it has none.
SPEC_EXAMPLE = r"""# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
# HELP msdos_file_access_time_seconds Access time.
# TYPE msdos_file_access_time_seconds gauge
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# HELP metric_without_timestamp_and_labels Minimalistic line.
# TYPE metric_without_timestamp_and_labels untyped
metric_without_timestamp_and_labels 12.47

# HELP something_weird A weird metric from before the epoch.
# TYPE something_weird gauge
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.05"} 3272
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.9"} 9001
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"""

HIST = ("# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
        "h_seconds_bucket{le=\"0.1\"} %s\nh_seconds_bucket{le=\"%s\"} %s\n"
        "h_seconds_bucket{le=\"+Inf\"} %s\nh_seconds_sum 1\nh_seconds_count %s\n")


def hist(b1="1", le2="1", b2="2", binf="3", count="3"):
    return HIST % (b1, le2, b2, binf, count)


C = "# HELP c_total C.\n# TYPE c_total counter\n"
G = "# HELP g_bytes G.\n# TYPE g_bytes gauge\n"

BAD = [
    ("no trailing LF", C + "c_total 1", "line feed"),
    ("CRLF", C.replace("\n", "\r\n") + "c_total 1\r\n", "carriage return"),
    ("bad metric name", C + "1c_total 1\n", "valid metric name"),
    ("bad label name", C + 'c_total{1a="x"} 1\n', "invalid label name"),
    ("reserved label", C + 'c_total{__x="x"} 1\n', "reserved"),
    ("unquoted label value", C + "c_total{a=x} 1\n", "not quoted"),
    ("bad escape \\t", C + 'c_total{a="x\\ty"} 1\n', "invalid escape"),
    ("raw quote in value", C + 'c_total{a="x"y"} 1\n', "expected ','"),
    ("unterminated label", C + 'c_total{a="x} 1\n', "unterminated"),
    ("duplicate label", C + 'c_total{a="x",a="y"} 1\n', "twice"),
    ("value not a float", C + "c_total one\n", "not a float"),
    ("value 0x hex", C + "c_total 0x10\n", "not a float"),
    ("lower-case nan", G + "g_bytes nan\n", "not a float"),
    ("no value", C + "c_total\n", "value"),
    ("bad timestamp", C + "c_total 1 1.5\n", "timestamp"),
    ("junk after timestamp", C + "c_total 1 2 3\n", "trailing junk"),
    ("trailing blank", C + "c_total 1 \n", "trailing blank"),
    ("no TYPE", "# HELP c_total C.\nc_total 1\n", "TYPE"),
    ("no HELP", "# TYPE c_total counter\nc_total 1\n", "HELP"),
    ("HELP after sample", "# TYPE c_total counter\nc_total 1\n# HELP c_total C.\n", "HELP"),
    ("two TYPE", C + "# TYPE c_total counter\nc_total 1\n", "second # TYPE"),
    ("two HELP", C + "# HELP c_total again\nc_total 1\n", "second # HELP"),
    ("bad TYPE", "# HELP c_total C.\n# TYPE c_total countr\nc_total 1\n", "bad # TYPE"),
    ("empty HELP", "# HELP c_total\n# TYPE c_total counter\nc_total 1\n", "HELP"),
    ("HELP bad escape", "# HELP c_total a \\q b\n# TYPE c_total counter\nc_total 1\n",
     "invalid escape"),
    ("duplicate series", C + 'c_total{a="1",b="2"} 1\nc_total{b="2",a="1"} 2\n', "duplicate"),
    ("not contiguous", C + 'c_total{a="1"} 1\n' + G + "g_bytes 1\n" + 'c_total{a="2"} 1\n',
     "contiguous"),
    ("counter without _total", "# HELP c C.\n# TYPE c counter\nc 1\n", "_total"),
    ("gauge with _total", "# HELP g_total G.\n# TYPE g_total gauge\ng_total 1\n", "_total"),
    ("negative counter", C + "c_total -1\n", ">= 0"),
    ("milliseconds", "# HELP d_milliseconds D.\n# TYPE d_milliseconds gauge\nd_milliseconds 1\n",
     "base unit"),
    ("ms", "# HELP lat_ms_total D.\n# TYPE lat_ms_total counter\nlat_ms_total 1\n", "base unit"),
    ("kilobytes", "# HELP s_kilobytes D.\n# TYPE s_kilobytes gauge\ns_kilobytes 1\n",
     "base unit"),
    ("colon", "# HELP a:b A.\n# TYPE a:b gauge\na:b 1\n", "':'"),
    ("gauge _count", "# HELP x_count X.\n# TYPE x_count gauge\nx_count 1\n", "reserved suffix"),
    ("wrong sample in gauge family", G + "g_bytes_max 1\n", "TYPE"),
    ("histogram le decreasing", hist(le2="0.05"), "not greater"),
    ("histogram le repeated", hist(le2="0.1"), "duplicate series"),
    ("histogram not cumulative", hist(b1="2", b2="1", binf="3"), "cumulative"),
    ("histogram no +Inf", "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
     "h_seconds_bucket{le=\"1\"} 1\nh_seconds_sum 1\nh_seconds_count 1\n", "+Inf"),
    ("histogram +Inf not last", "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
     "h_seconds_bucket{le=\"+Inf\"} 1\nh_seconds_bucket{le=\"2\"} 1\nh_seconds_sum 1\n"
     "h_seconds_count 1\n", "not greater"),
    ("histogram count != +Inf", hist(count="4"), "differs"),
    ("histogram no _sum", "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
     "h_seconds_bucket{le=\"+Inf\"} 1\nh_seconds_count 1\n", "_sum"),
    ("histogram no _count", "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
     "h_seconds_bucket{le=\"+Inf\"} 1\nh_seconds_sum 1\n", "_count"),
    ("bucket without le", "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
     "h_seconds_bucket 1\nh_seconds_sum 1\nh_seconds_count 1\n", "le label"),
    ("le not a float", hist(le2="abc"), "not a float"),
    ("duration histogram not seconds", "# HELP req_duration H.\n# TYPE req_duration histogram\n"
     "req_duration_bucket{le=\"+Inf\"} 1\nreq_duration_sum 1\nreq_duration_count 1\n",
     "_seconds"),
    ("not UTF-8", (C + 'c_total{a="\xff"} 1\n').encode("latin-1"), "UTF-8"),
    ("empty", "", "empty"),
]


def self_test():
    failures = 0
    try:
        c = Checker().check(GOOD)
        if c.nsamples != 14 or len(c.families) != 4:
            print("FAIL good sample: %d samples, %d families" % (c.nsamples, len(c.families)))
            failures += 1
        key = ("demo_requests_total", frozenset({("code", "200"), ("path", '/a"b\\c\nd')}))
        if c.series.get(key) != 10:
            print("FAIL good sample: escaped label value not unescaped correctly")
            failures += 1
    except Violation as e:
        print("FAIL good sample rejected: %s" % e)
        failures += 1
    try:
        c = Checker().check(SPEC_EXAMPLE)
        key = ("msdos_file_access_time_seconds",
               frozenset({("path", "C:\\DIR\\FILE.TXT"),
                          ("error", 'Cannot find file:\n"FILE.TXT"')}))
        if c.nsamples != 20 or c.series.get(key) != 1.458255915e9:
            print("FAIL spec example: %d samples, escaped series %r"
                  % (c.nsamples, c.series.get(key)))
            failures += 1
    except Violation as e:
        print("FAIL spec example rejected: %s" % e)
        failures += 1
    for name, text, want in BAD:
        try:
            Checker().check(text)
            print("FAIL %s: accepted" % name)
            failures += 1
        except Violation as e:
            if want.lower() not in str(e).lower():
                print("FAIL %s: rejected for another reason: %s" % (name, e))
                failures += 1
    print("prom_check self-test: %d broken samples, %d failure%s"
          % (len(BAD), failures, "" if failures == 1 else "s"))
    return 1 if failures else 0


def main(argv):
    args = argv[1:]
    if args == ["--self-test"]:
        return self_test()
    gets, path = [], None
    for a in args:
        if a == "--get":
            gets.append([None, {}])
        elif gets and gets[-1][0] is None:
            gets[-1][0] = a
        elif gets and "=" in a:
            k, v = a.split("=", 1)
            gets[-1][1][k] = v
        elif path is None and not a.startswith("-"):
            path = a
        else:
            print(__doc__.split("\n\n")[1], file=sys.stderr)
            return 2
    if any(g[0] is None for g in gets):
        print("prom_check: --get needs a metric name", file=sys.stderr)
        return 2
    data = open(path, "rb").read() if path else sys.stdin.buffer.read()
    try:
        c = Checker().check(data)
    except Violation as e:
        print("prom_check: %s" % e, file=sys.stderr)
        return 1
    if not gets:
        print("prom_check: ok, %d families, %d samples" % (len(c.families), c.nsamples))
        return 0
    for name, want in gets:
        v = c.series.get((name, frozenset(want.items())))
        print("absent" if v is None else fmt_value(v))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
