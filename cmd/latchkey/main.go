// Command latchkey is the Latchkey identity provider: the server and the
// administrative tasks that bootstrap a deployment.
//
// It is the only composition root: it reads the configuration, opens the
// store, builds every component with explicit options and mounts them.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/latchkey/latchkey/config"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "latchkey:", err)
		os.Exit(1)
	}
}

// run runs the command line args (see newRoot) with these streams.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	root := newRoot(&env{stdin: stdin, out: stdout, errOut: stderr})
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl}))
}
