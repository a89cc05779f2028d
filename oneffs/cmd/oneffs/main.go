// Command oneffs creates, reads and writes OneFFS images, with the commands,
// output and exit codes of robur-coop's OCaml `oneffs` (create, get, set,
// info; spec §8) and a few more (format, delete, verify).
//
// Exit codes: 0 ok; 1 `get` on an image that holds no file; 2 a read or
// write error (for example a bad checksum, or data that does not fit);
// 124 a command-line error; 125 any other error (a corrupt header, an image
// that cannot be opened). Errors are one line on stderr.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"elit.local/oneffs"
)

const (
	exitOK      = 0
	exitNoData  = 1
	exitIO      = 2
	exitUsage   = 124
	exitFailure = 125
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// option is a command-line option: short and long names, and whether it takes a value.
type option struct {
	short, long, value, help string
}

var (
	optBlock  = option{"b", "block-size", "N", "Sector size in bytes (default: the device's for a block device, 512 for a file). It is not stored in the image: use the size the image was made with."}
	optSize   = option{"", "size", "SIZE", "Image size, in bytes or with a K, M, G or T suffix (powers of 1024), e.g. 64K, 1M."}
	optFormat = option{"", "format", "FORMAT", "On-disk format: classic (the original's, default) or fail-safe (two superblocks, copy-on-write: a power cut leaves the old or the new data)."}
	optInput  = option{"i", "input", "FILE", "The file to store."}
	optOutput = option{"o", "output", "IMG", "The image file to create; it must not exist."}
)

type command struct {
	name, summary, args string
	opts                []option
	run                 func(c *call) int
}

var commands []*command

func init() {
	commands = []*command{
		{"create", "Create a new image file holding FILE.", "", []option{optInput, optOutput, optBlock, optSize, optFormat}, cmdCreate},
		{"get", "Write the stored file to standard output.", "IMG", []option{optBlock}, cmdGet},
		{"set", "Store standard input in the image, replacing its file.", "IMG", []option{optBlock, optFormat}, cmdSet},
		{"info", "Say whether the image holds a file, and its size.", "IMG", []option{optBlock}, cmdInfo},
		{"format", "Make the image empty; create it (with --size) if it does not exist.", "IMG", []option{optBlock, optSize, optFormat}, cmdFormat},
		{"delete", "Remove the stored file and zero its data sectors.", "IMG", []option{optBlock}, cmdDelete},
		{"verify", "Check headers and data, and say what was found.", "IMG", []option{optBlock}, cmdVerify},
	}
}

// call is one invocation of a command.
type call struct {
	cmd    *command
	vals   map[string]string // by long name
	args   []string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		mainHelp(stdout)
		return exitOK
	}
	if args[0] == "--version" {
		fmt.Fprintln(stdout, version())
		return exitOK
	}
	var cmd *command
	for _, c := range commands {
		if c.name == args[0] {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "oneffs: unknown command '%s', must be one of %s.\nTry 'oneffs --help' for more information.\n", args[0], commandNames())
		return exitUsage
	}
	c := &call{cmd: cmd, vals: map[string]string{}, stdin: stdin, stdout: stdout, stderr: stderr}
	if help, err := c.parse(args[1:]); err != nil {
		return c.usageError("%s", err)
	} else if help {
		cmdHelp(stdout, cmd)
		return exitOK
	}
	return cmd.run(c)
}

// parse reads options (anywhere on the line, as cmdliner allows) and positional arguments.
func (c *call) parse(args []string) (help bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			c.args = append(c.args, args[i+1:]...)
			break
		}
		if a == "--help" || a == "-h" {
			return true, nil
		}
		if len(a) < 2 || a[0] != '-' {
			c.args = append(c.args, a)
			continue
		}
		name, val, hasVal := strings.TrimPrefix(a, "--"), "", false
		long := strings.HasPrefix(a, "--")
		if long {
			name, val, hasVal = strings.Cut(name, "=")
		} else {
			name, val, hasVal = a[1:2], a[2:], len(a) > 2
		}
		var opt *option
		for j := range c.cmd.opts {
			if o := &c.cmd.opts[j]; (long && o.long == name) || (!long && o.short != "" && o.short == name) {
				opt = o
			}
		}
		if opt == nil {
			return false, fmt.Errorf("unknown option '%s'", a)
		}
		if !hasVal {
			if i+1 >= len(args) || (strings.HasPrefix(args[i+1], "-") && len(args[i+1]) > 1) {
				return false, fmt.Errorf("option '%s' needs an argument", a)
			}
			i++
			val = args[i]
		}
		c.vals[opt.long] = val
	}
	want := 0
	if c.cmd.args != "" {
		want = 1
	}
	switch {
	case len(c.args) < want:
		return false, fmt.Errorf("required argument %s is missing", c.cmd.args)
	case len(c.args) > want:
		return false, fmt.Errorf("too many arguments, don't know what to do with '%s'", c.args[want])
	}
	return false, nil
}

func (c *call) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "oneffs: "+format+"\nUsage: oneffs %s [OPTION]… %s\nTry 'oneffs %s --help' for more information.\n",
		append(args, c.cmd.name, c.cmd.args, c.cmd.name)...)
	return exitUsage
}

func (c *call) fail(code int, err error) int {
	fmt.Fprintf(c.stderr, "oneffs: %v\n", err)
	return code
}

// options turns -b and --format into oneffs options.
func (c *call) options() ([]oneffs.Option, int) {
	var opts []oneffs.Option
	if v, ok := c.vals["block-size"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, c.usageError("option '-b': invalid value '%s', expected an integer", v)
		}
		opts = append(opts, oneffs.WithSectorSize(n))
	}
	if v, ok := c.vals["format"]; ok {
		f, err := oneffs.ParseFormat(v)
		if err != nil {
			return nil, c.usageError("option '--format': %v", err)
		}
		opts = append(opts, oneffs.WithFormat(f))
	}
	if v, ok := c.vals["size"]; ok {
		n, err := parseSize(v)
		if err != nil {
			return nil, c.usageError("option '--size': %v", err)
		}
		opts = append(opts, oneffs.WithSize(n))
	}
	return opts, -1
}

// open opens the image argument. read-only commands open it read-only.
func (c *call) open(readOnly bool) (*oneffs.Image, int) {
	opts, code := c.options()
	if code >= 0 {
		return nil, code
	}
	path := c.args[0]
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, c.usageError("ONEFFS argument: no '%s' file or directory", path)
	}
	if readOnly {
		opts = append(opts, oneffs.WithReadOnly())
	}
	im, err := oneffs.Open(path, opts...)
	if err != nil {
		return nil, c.fail(exitFailure, err)
	}
	return im, -1
}

// exitFor maps a read or write error to the original's exit codes: a header
// that cannot be decoded was an uncaught exception (125), the rest are
// errors oneffs reports (2).
func exitFor(err error) int {
	var he *oneffs.HeaderError
	if errors.As(err, &he) {
		return exitFailure
	}
	return exitIO
}

func cmdCreate(c *call) int {
	in, out := c.vals["input"], c.vals["output"]
	switch {
	case in == "":
		return c.usageError("required option -i is missing")
	case out == "":
		return c.usageError("required option -o is missing")
	}
	if _, err := os.Stat(in); err != nil {
		return c.usageError("option '-i': no '%s' file or directory", in)
	}
	if _, err := os.Lstat(out); err == nil {
		return c.usageError("option '-o': %s already exists", out)
	}
	opts, code := c.options()
	if code >= 0 {
		return code
	}
	data, err := os.ReadFile(in)
	if err != nil {
		return c.fail(exitFailure, err)
	}
	if err := oneffs.Create(out, data, opts...); err != nil {
		return c.fail(exitFailure, err)
	}
	return exitOK
}

func cmdGet(c *call) int {
	im, code := c.open(true)
	if code >= 0 {
		return code
	}
	defer im.Close()
	data, err := im.Read()
	switch {
	case errors.Is(err, oneffs.ErrUnset):
		fmt.Fprintln(c.stderr, "No data.")
		return exitNoData
	case errors.Is(err, oneffs.ErrBadChecksum):
		fmt.Fprintln(c.stderr, "Bad checksum")
		return exitIO
	case err != nil:
		return c.fail(exitFor(err), err)
	}
	if _, err := c.stdout.Write(data); err != nil {
		return c.fail(exitIO, err)
	}
	return exitOK
}

func cmdSet(c *call) int {
	im, code := c.open(false)
	if code >= 0 {
		return code
	}
	defer im.Close()
	data, err := io.ReadAll(c.stdin)
	if err != nil {
		return c.fail(exitIO, fmt.Errorf("reading standard input: %w", err))
	}
	if err := im.Write(data); err != nil {
		return c.fail(exitIO, err)
	}
	return exitOK
}

func cmdInfo(c *call) int {
	im, code := c.open(true)
	if code >= 0 {
		return code
	}
	defer im.Close()
	info, err := im.Stat()
	if err != nil {
		return c.fail(exitFor(err), err)
	}
	if info.Set {
		fmt.Fprintf(c.stdout, "Set and contains %d bytes of data.\n", info.Length)
	} else {
		fmt.Fprintln(c.stdout, "Unset.")
	}
	return exitOK
}

func cmdFormat(c *call) int {
	opts, code := c.options()
	if code >= 0 {
		return code
	}
	path := c.args[0]
	size, sized := c.vals["size"]
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if !sized {
			return c.usageError("%s does not exist: give --size to create it", path)
		}
		n, _ := parseSize(size)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if err != nil {
			return c.fail(exitFailure, err)
		}
		err = f.Truncate(n)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return c.fail(exitFailure, err)
		}
	case err != nil:
		return c.fail(exitFailure, err)
	case sized && fi.Mode().IsRegular():
		n, _ := parseSize(size)
		if err := os.Truncate(path, n); err != nil {
			return c.fail(exitFailure, err)
		}
	case sized:
		return c.usageError("option '--size': %s is not a regular file; a device keeps its size", path)
	}
	im, err := oneffs.Open(path, opts...)
	if err != nil {
		return c.fail(exitFailure, err)
	}
	defer im.Close()
	if err := im.Format(); err != nil {
		return c.fail(exitIO, err)
	}
	return exitOK
}

func cmdDelete(c *call) int {
	im, code := c.open(false)
	if code >= 0 {
		return code
	}
	defer im.Close()
	if err := im.Delete(); err != nil {
		return c.fail(exitIO, err)
	}
	return exitOK
}

func cmdVerify(c *call) int {
	im, code := c.open(true)
	if code >= 0 {
		return code
	}
	defer im.Close()
	w := c.stdout
	fmt.Fprintf(w, "device: %s, %d bytes, %d sectors of %d bytes\n", c.args[0], im.DeviceSize(), im.DeviceSize()/int64(im.SectorSize()), im.SectorSize())
	info, err := im.Stat()
	if err != nil {
		fmt.Fprintf(w, "damaged: %v\n", err)
		return exitIO
	}
	fmt.Fprintf(w, "format: %s\n", info.Format)
	switch {
	case !info.Set:
		fmt.Fprintln(w, "file: none")
	case info.Format == oneffs.FailSafe:
		fmt.Fprintf(w, "file: %d bytes, SHA-256 %x, write counter %d\n", info.Length, info.SHA256, info.Counter)
	default:
		fmt.Fprintf(w, "file: %d bytes, CRC-32 %#08x\n", info.Length, info.FileCRC)
	}
	for _, n := range info.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if info.Set {
		if _, err := im.Read(); err != nil {
			fmt.Fprintf(w, "damaged: data: %v\n", err)
			return exitIO
		}
		fmt.Fprintln(w, "data: ok")
	}
	if info.Degraded {
		fmt.Fprintln(w, "damaged: one superblock is bad; write the file again to repair it")
		return exitIO
	}
	return exitOK
}

// parseSize parses a byte count with an optional K, M, G or T suffix (powers of 1024).
func parseSize(s string) (int64, error) {
	num := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I")
	mult := int64(1)
	if k := len(num); k > 0 {
		if i := strings.IndexByte("KMGT", num[k-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			num = num[:k-1]
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size '%s', expected e.g. 65536, 64K or 1M", s)
	}
	return n * mult, nil
}

func commandNames() string {
	var names []string
	for _, c := range commands {
		names = append(names, "'"+c.name+"'")
	}
	return strings.Join(names, ", ")
}

func mainHelp(w io.Writer) {
	fmt.Fprintln(w, "oneffs - the One File File System: one file on a raw block device or image file")
	fmt.Fprintln(w, "\nUsage: oneffs COMMAND [OPTION]… [IMG]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nExit status: 0 ok; 1 get on an image without a file; 2 a read or write error;")
	fmt.Fprintln(w, "124 a command-line error; 125 any other error (e.g. a corrupt header).")
	fmt.Fprintln(w, "\n'oneffs COMMAND --help' describes a command.")
}

func cmdHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "oneffs %s - %s\n\nUsage: oneffs %s [OPTION]… %s\n\nOptions:\n", c.name, c.summary, c.name, c.args)
	for _, o := range c.opts {
		names := "--" + o.long
		if o.short != "" {
			names = "-" + o.short + " " + o.value + ", " + names
		}
		fmt.Fprintf(w, "  %s=%s\n      %s\n", names, o.value, o.help)
	}
	fmt.Fprintln(w, "  -h, --help\n      Show this help.")
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
