// Package testmail is an in-process SMTP server for tests: it accepts every
// message on a loopback port and keeps it, so tests read what Latchkey
// mailed without any traffic leaving the machine.
package testmail

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// Server is a running test SMTP server.
type Server struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
}

// New starts a server that stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Messages returns every message received, in order.
func (s *Server) Messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

// To returns the messages addressed to addr.
func (s *Server) To(addr string) []string {
	var out []string
	for _, m := range s.Messages() {
		if strings.Contains(m, "To: "+addr+"\r\n") {
			out = append(out, m)
		}
	}
	return out
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	io.WriteString(c, "220 test ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
		case strings.HasPrefix(cmd, "DATA"):
			io.WriteString(c, "354 go ahead\r\n")
			var sb strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil || l == ".\r\n" {
					break
				}
				sb.WriteString(l)
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, sb.String())
			s.mu.Unlock()
			io.WriteString(c, "250 queued\r\n")
		case strings.HasPrefix(cmd, "QUIT"):
			io.WriteString(c, "221 bye\r\n")
			return
		default:
			io.WriteString(c, "250 ok\r\n")
		}
	}
}
