package testdb

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards TCP to a database server and fails it the ways a restart,
// a network cut or a failover would, so a test can watch a store lose its
// connections at a chosen moment.
type Proxy struct {
	ln     net.Listener
	target string
	down   atomic.Bool
	mu     sync.Mutex
	pairs  []*proxyPair
	trip   []byte // the next client message holding it loses its answer
}

type proxyPair struct {
	client, server net.Conn
	mute           atomic.Bool // answers are dropped
}

func (p *proxyPair) close() { p.client.Close(); p.server.Close() }

// NewProxy listens on a loopback port and forwards to target (host:port).
func NewProxy(t testing.TB, target string) *Proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pair := &proxyPair{client: c, server: up}
		p.mu.Lock()
		p.pairs = append(p.pairs, pair)
		p.mu.Unlock()
		go p.toServer(pair)
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 && !pair.mute.Load() {
					if _, werr := c.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			c.Close()
		}()
	}
}

// toServer copies the client's bytes to the server; a chunk holding the
// armed trip string is delivered, its answer dropped, and the connection
// cut once the server has had time to act on it.
func (p *Proxy) toServer(pair *proxyPair) {
	buf := make([]byte, 32<<10)
	for {
		n, err := pair.client.Read(buf)
		if n > 0 {
			p.mu.Lock()
			tripped := p.trip != nil && bytes.Contains(bytes.ToLower(buf[:n]), p.trip)
			if tripped {
				p.trip = nil
			}
			p.mu.Unlock()
			if tripped {
				pair.mute.Store(true)
			}
			if _, werr := pair.server.Write(buf[:n]); werr != nil {
				break
			}
			if tripped {
				time.Sleep(300 * time.Millisecond)
				pair.close()
				return
			}
		}
		if err != nil {
			break
		}
	}
	pair.server.Close()
}

// Cut drops every connection and refuses new ones until Resume (the
// server is down).
func (p *Proxy) Cut() {
	p.down.Store(true)
	p.Drop()
}

// Resume accepts connections again.
func (p *Proxy) Resume() { p.down.Store(false) }

// Drop closes every open connection and keeps accepting new ones (the
// server restarted, or another took its address).
func (p *Proxy) Drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.pairs {
		c.close()
	}
	p.pairs = nil
}

// LoseAnswerTo arms the proxy: the next message from a client that
// contains s (case-insensitive), such as "commit", reaches the server,
// which acts on it, but its answer never comes back: the connection is
// cut first.
func (p *Proxy) LoseAnswerTo(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trip = bytes.ToLower([]byte(s))
}
