package sqlstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/latchkey/latchkey/store"
)

// tokenBatcher groups the token inserts of concurrent grants into one
// statement and one commit (PostgreSQL only: it uses unnest and a
// data-modifying WITH). A grant's INSERT is small; what it costs the
// database is mostly the statement and the commit around it (measured:
// 0.25 ms of PostgreSQL CPU per single-row grant), so grants that arrive
// together share them.
//
// No timer: a caller that finds fewer than tokenWriters writes in flight
// leads and writes at once, alone if alone. Callers that arrive while
// those are in flight queue up; when a write ends, its leader hands the
// queue (up to maxTokenBatch) to the first of them, who writes it. Nobody is answered before the statement
// holding its row has committed, so an answered grant is as durable as
// before. If a batch fails, its rows are written one by one, so a bad row
// fails alone.
type tokenBatcher struct {
	c     Conn
	mu    sync.Mutex
	queue []*tokenWrite
	busy  int // leaders writing
}

const maxTokenBatch = 256

// tokenWriters is how many batches may be in flight at once. Two beat one
// and four at 16 and 64 concurrent grants (scripts/bench-tokens.sh): a
// batch fills while the other commits.
const tokenWriters = 2

type tokenWrite struct {
	args []any // the 22 arguments of the single-row statement
	done chan tokenResult
}

type tokenResult struct {
	err   error
	batch []*tokenWrite // non-nil: the receiver now leads and writes these (itself first)
}

func (b *tokenBatcher) write(ctx context.Context, args []any) error {
	w := &tokenWrite{args: args, done: make(chan tokenResult, 1)}
	var batch []*tokenWrite
	b.mu.Lock()
	if b.busy < tokenWriters {
		b.busy++
		b.queue = append(b.queue, w)
		batch = b.take()
		b.mu.Unlock()
	} else {
		b.queue = append(b.queue, w)
		b.mu.Unlock()
		r := <-w.done
		if r.batch == nil {
			return r.err
		}
		batch = r.batch
	}
	// Whatever happens to this leader, the others hear and the lead moves
	// on: a follower left waiting would wait forever.
	answered := false
	defer func() {
		if !answered {
			for _, x := range batch {
				if x != w {
					x.done <- tokenResult{err: errLeaderFailed}
				}
			}
			b.handOff()
		}
	}()
	// The write is everyone's in the batch: the leader's caller leaving
	// must not cancel it.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	errs := b.insert(wctx, batch)
	cancel()
	answered = true
	var own error
	for i, x := range batch {
		if x == w {
			own = errs[i]
			continue
		}
		x.done <- tokenResult{err: errs[i]}
	}
	b.handOff()
	return own
}

var errLeaderFailed = errors.New("sqlstore: the grant batch holding this token failed")

// handOff gives the lead, with the queue as its batch, to the first
// waiter; nobody in the queue is a leader, so the count of leaders holds.
func (b *tokenBatcher) handOff() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) > 0 {
		next := b.take()
		next[0].done <- tokenResult{batch: next}
		return
	}
	b.busy--
}

// take removes the next batch from the queue; b.mu is held.
func (b *tokenBatcher) take() []*tokenWrite {
	n := min(len(b.queue), maxTokenBatch)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	return batch
}

// insert writes the batch, falling back to one row at a time if the batch
// fails, and returns each row's outcome.
func (b *tokenBatcher) insert(ctx context.Context, batch []*tokenWrite) []error {
	errs := make([]error, len(batch))
	if len(batch) == 1 {
		errs[0] = b.one(ctx, batch[0].args)
		return errs
	}
	cols := make([]any, 22)
	for c := range cols {
		cols[c] = column(c, len(batch))
	}
	for _, x := range batch {
		for c, v := range x.args {
			cols[c] = appendValue(cols[c], v)
		}
	}
	_, err := b.c.Exec(ctx, batchTokenSQL, cols...)
	if err == nil {
		return errs
	}
	if errors.Is(err, store.ErrUnavailable) {
		// No database to write to row by row (and the batch may have
		// committed with its answer lost): every grant in it fails.
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for i, x := range batch {
		errs[i] = b.one(ctx, x.args)
	}
	return errs
}

func (b *tokenBatcher) one(ctx context.Context, args []any) error {
	_, err := b.c.Exec(ctx, singleTokenSQL, args...)
	return err
}

// Column types of the 22 arguments (tokenCols, then eventCols).
const (
	colText = iota
	colBool
	colTime
	colBytes
)

var tokenArgTypes = [22]int{
	colText, colText, colText, colText, colText, colText, colBool, colTime, colTime, colText, colText, colText, colText, colText, colBytes,
	colTime, colText, colText, colText, colText, colText, colText,
}

func column(c, n int) any {
	switch tokenArgTypes[c] {
	case colBool:
		return make([]bool, 0, n)
	case colTime:
		return make([]time.Time, 0, n)
	case colBytes:
		return make([][]byte, 0, n)
	default:
		return make([]string, 0, n)
	}
}

func appendValue(col, v any) any {
	switch c := col.(type) {
	case []bool:
		return append(c, v.(bool))
	case []time.Time:
		return append(c, v.(time.Time))
	case [][]byte:
		return append(c, v.([]byte))
	default:
		return append(col.([]string), v.(string))
	}
}

var (
	singleTokenSQL = `WITH t AS (INSERT INTO oauth2_tokens (` + tokenCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15))
			INSERT INTO token_events (` + eventCols + `) VALUES ($16, $17, $18, $19, $20, $21, $22)`
	batchTokenSQL = `WITH t AS (INSERT INTO oauth2_tokens (` + tokenCols + `)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[],
				$8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::bytea[]))
			INSERT INTO token_events (` + eventCols + `)
			SELECT * FROM unnest($16::timestamptz[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[])`
)
