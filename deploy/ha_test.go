package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestHAClusterFailover starts deploy/ha/cluster.sh's etcd + three-node
// Patroni cluster, writes through the multi-host DSN, kills the primary's
// postmaster (kill -9) and then switches the primary over, and checks that
// every acknowledged write survived both, that writes resumed within the
// target, and that stop leaves no process of the cluster behind. The
// unavailability windows are logged (BENCHMARKS.md quotes them).
func TestHAClusterFailover(t *testing.T) {
	if os.Getuid() != 0 && os.Getenv("CI") != "true" {
		t.Skip("the HA cluster runs PostgreSQL as the postgres user: needs root")
	}
	if _, err := exec.LookPath("patroni"); err != nil && os.Getenv("CI") != "true" {
		t.Skip("patroni not installed (cluster.sh installs it under CI=true)")
	}
	dir := fmt.Sprintf("/tmp/latchkey-ha-test-%d", os.Getpid())
	env := append(os.Environ(), "HA_DIR="+dir, "HA_PORT_BASE=26430")
	script := func(args ...string) string {
		cmd := exec.Command("ha/cluster.sh", args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cluster.sh %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	out := script("start")
	t.Cleanup(func() {
		script("stop")
		if left, _ := exec.Command("pgrep", "-f", dir).Output(); len(left) > 0 {
			t.Errorf("processes of the cluster left after stop: %s", left)
		}
	})
	lines := strings.Split(out, "\n")
	dsn := lines[len(lines)-1] + "&connect_timeout=1"

	ctx := context.Background()
	// Every attempt writes a new number; a write whose answer was lost
	// may be stored without being acknowledged, never the reverse.
	var acked []int32
	attempts := int32(0)
	write := func() (int, error) {
		attempts++
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return 0, err
		}
		defer c.Close(ctx)
		var port int
		err = c.QueryRow(ctx, `INSERT INTO acked (n) VALUES ($1) RETURNING inet_server_port()`, attempts).Scan(&port)
		if err == nil {
			acked = append(acked, attempts)
		}
		return port, err
	}
	func() {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `CREATE TABLE acked (n int PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
	}()
	for range 20 {
		if _, err := write(); err != nil {
			t.Fatal(err)
		}
	}
	// waitWritable writes until a write lands on a port other than from
	// (when from is set) and returns how long writes failed.
	waitWritable := func(what string, from int) time.Duration {
		start := time.Now()
		var down time.Duration
		for time.Since(start) < 60*time.Second {
			t0 := time.Now()
			port, err := write()
			if err != nil {
				down += time.Since(t0)
				time.Sleep(100 * time.Millisecond)
				down += 100 * time.Millisecond
				continue
			}
			if from == 0 || port != from {
				t.Logf("%s: writes failed for %.1f s; primary now on %d", what, down.Seconds(), port)
				return down
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s: no writable primary within 60 s", what)
		return 0
	}

	primary, err := strconv.Atoi(script("primary"))
	if err != nil {
		t.Fatal(err)
	}
	node := primary - 26430
	pid, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node%d", node), "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("kill", "-9", strings.SplitN(string(pid), "\n", 2)[0]).Run(); err != nil {
		t.Fatal(err)
	}
	if down := waitWritable("kill -9 of the primary's postmaster", 0); down > 15*time.Second {
		t.Errorf("unavailable for %v after kill -9, target under 15 s", down)
	}

	primary, _ = strconv.Atoi(script("primary"))
	sw := exec.Command("setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
		"patronictl", "-c", filepath.Join(dir, "node1.yml"), "switchover", "--force", "latchkey-ha")
	if os.Getuid() != 0 {
		sw = exec.Command("patronictl", "-c", filepath.Join(dir, "node1.yml"), "switchover", "--force", "latchkey-ha")
	}
	time.Sleep(5 * time.Second) // the synchronous standby is named again after a restart
	var swOut strings.Builder
	sw.Stdout, sw.Stderr = &swOut, &swOut
	if err := sw.Start(); err != nil { // writes go on while it switches
		t.Fatal(err)
	}
	if down := waitWritable("planned switchover", primary); down > 15*time.Second {
		t.Errorf("unavailable for %v during the switchover, target under 15 s", down)
	}
	if err := sw.Wait(); err != nil {
		t.Fatalf("switchover: %v\n%s", err, swOut.String())
	}

	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM acked WHERE n = ANY($1)`, acked).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(acked) {
		t.Fatalf("%d acknowledged writes, %d of them stored after the failover and the switchover", len(acked), n)
	}
	t.Logf("%d acknowledged writes, all stored", n)
}
