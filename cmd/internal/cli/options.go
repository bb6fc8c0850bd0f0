package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// A daemon's options come from its flags and, with --config FILE, from a
// TOML file whose keys are the flag names: every flag is settable there,
// and a flag given on the command line overrides the file. TOML rather
// than YAML: a daemon's options are a flat list of typed scalars, which
// TOML writes as `key = value` lines an operator of wg-quick or systemd
// reads at once; it has no indentation to get wrong and no implicit typing
// (YAML 1.1 reads `off`, the spelling of every switch here, as false).

// Options is a command's flag set and where each value came from.
type Options struct {
	fs       *flag.FlagSet
	file     string          // the config file, "" if none
	fromFile map[string]bool // flags whose value is the file's
	// meta are the flags that steer the command rather than configure the
	// daemon: not settable in the file, not printed by --check-config.
	meta map[string]bool

	// effective is each option's value as parsed (TOML text), before the
	// command turns "off" and defaults into its config's spelling.
	effective map[string]string

	config      *string
	checkConfig *bool
	logFormat   *string
}

// NewOptions adds --config, --check-config and --log-format to fs.
func NewOptions(fs *flag.FlagSet, daemon string) *Options {
	o := &Options{fs: fs, fromFile: map[string]bool{}, meta: map[string]bool{"config": true, "check-config": true}}
	o.config = fs.String("config", "", "read options from this TOML file (keys are the flag names; flags given here override it)")
	o.checkConfig = fs.Bool("check-config", false, "check the options (and the "+daemon+"'s local files), print the effective config as TOML and exit")
	o.logFormat = fs.String("log-format", "text", `log format: "text" or "json" (log/slog's handlers)`)
	return o
}

// Parse parses args, then fills the flags not given there from the config
// file, if any.
func (o *Options) Parse(args []string) error {
	if err := ParseFlags(o.fs, args); err != nil {
		return err
	}
	if *o.config != "" {
		o.file = *o.config
		b, err := os.ReadFile(o.file)
		if err != nil {
			return fmt.Errorf("%w: --config: %v", ErrUsage, err)
		}
		if err := o.apply(b); err != nil {
			return err
		}
	}
	return o.snapshot()
}

// apply sets the flags that the command line left alone from the TOML
// document b.
func (o *Options) apply(b []byte) error {
	var doc map[string]any
	if _, err := toml.Decode(string(b), &doc); err != nil {
		return fmt.Errorf("%w: config %s: %v", ErrUsage, o.file, err)
	}
	onCommandLine := map[string]bool{}
	o.fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := o.fs.Lookup(k)
		if f == nil || o.meta[k] {
			return fmt.Errorf("%w: config %s: unknown key %q (the keys are the flag names: see '%s -h')", ErrUsage, o.file, k, o.fs.Name())
		}
		v, err := tomlValue(doc[k])
		if err != nil {
			return fmt.Errorf("%w: config %s: key %q: %v", ErrUsage, o.file, k, err)
		}
		if onCommandLine[k] {
			continue
		}
		if err := o.fs.Set(k, v); err != nil {
			return fmt.Errorf("%w: config %s: key %q: %v", ErrUsage, o.file, k, err)
		}
		o.fromFile[k] = true
	}
	return nil
}

// tomlValue turns a TOML value into the flag's text: scalars as written, an
// array of strings as the comma-separated list the list flags take.
func tomlValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case bool:
		return strconv.FormatBool(v), nil
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return "", fmt.Errorf("a list may hold only strings, not %T", e)
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		return "", errors.New("a table is not an option (the file is flat: key = value)")
	}
	return "", fmt.Errorf("unsupported value of type %T (want a string, an integer, a boolean or a list of strings)", v)
}

// Label names option name as the operator gave it: the flag, or the key
// in the config file.
func (o *Options) Label(name string) string {
	if o.fromFile[name] {
		return fmt.Sprintf("%s (in %s)", name, o.file)
	}
	return "--" + name
}

// UsageErr is a usage error about option name.
func (o *Options) UsageErr(name, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrUsage, o.Label(name), fmt.Sprintf(format, args...))
}

// Relabel rewrites the "--name: " that node and server errors start with
// into the option's label, so an error caused by the config file names
// the file's key.
func (o *Options) Relabel(name string, err error) error {
	if !o.fromFile[name] {
		return err
	}
	return &relabeled{err: err, from: "--" + name, to: o.Label(name)}
}

type relabeled struct {
	err      error
	from, to string
}

func (r *relabeled) Error() string { return strings.Replace(r.err.Error(), r.from, r.to, 1) }
func (r *relabeled) Unwrap() error { return r.err }

// snapshot records every option's value as TOML text.
func (o *Options) snapshot() error {
	o.effective = map[string]string{}
	var err error
	o.fs.VisitAll(func(f *flag.Flag) {
		if o.meta[f.Name] || err != nil {
			return
		}
		v := f.Value.String()
		if g, ok := f.Value.(flag.Getter); ok {
			switch g.Get().(type) {
			case bool, int, int64, uint, uint64:
				o.effective[f.Name] = v
				return
			}
		}
		o.effective[f.Name], err = tomlString(v)
	})
	return err
}

// WriteConfig prints the effective options as a TOML config file that
// --config reads back to the same options.
func (o *Options) WriteConfig(w io.Writer) error {
	names := make([]string, 0, len(o.effective))
	for n := range o.effective {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "# %s: effective configuration\n", o.fs.Name())
	for _, n := range names {
		if _, err := fmt.Fprintf(w, "%s = %s\n", n, o.effective[n]); err != nil {
			return err
		}
	}
	return nil
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) (string, error) {
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(map[string]string{"v": s}); err != nil {
		return "", err
	}
	return strings.TrimSpace(strings.TrimPrefix(b.String(), "v = ")), nil
}

// Logger builds the daemon's logger in the chosen format.
func (o *Options) Logger(w io.Writer, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch *o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, o.UsageErr("log-format", "%q: want text or json", *o.logFormat)
}

// CheckConfig says --check-config was given: the command checks its
// options, prints them (WriteConfig) and exits.
func (o *Options) CheckConfig() bool { return *o.checkConfig }

// Given says the operator set option name, on the command line or in the
// config file (rather than leaving its default).
func (o *Options) Given(name string) bool {
	given := o.fromFile[name]
	o.fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			given = true
		}
	})
	return given
}
