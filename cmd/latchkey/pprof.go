package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"

	"github.com/go-chi/chi/v5"
)

// startPprof serves Go's profiler when LATCHKEY_DEBUG_PPROF names a
// loopback address, for profiling benchmarks. It is never on the main
// listener and refuses non-loopback addresses.
func startPprof(log *slog.Logger) {
	addr := os.Getenv("LATCHKEY_DEBUG_PPROF")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Warn("LATCHKEY_DEBUG_PPROF must be a loopback address; profiler not started", "addr", addr)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() { log.Warn("profiler stopped", "err", http.ListenAndServe(addr, mux)) }()
}

// mountPprof serves the profiler on the admin listener (http.admin_listen),
// which is never the public one.
func mountPprof(r chi.Router) {
	r.HandleFunc("/debug/pprof/*", pprof.Index)
	r.HandleFunc("/debug/pprof/profile", pprof.Profile)
	r.HandleFunc("/debug/pprof/trace", pprof.Trace)
	r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
}
