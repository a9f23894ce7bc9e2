package shred

import (
	"context"
	"sync"
	"time"

	"lethe.dev/platform/storage"
)

// Vacuumer reclaims deleted key rows on PostgreSQL. A DELETE there only marks a row dead;
// its bytes stay in the heap until VACUUM prunes the page. Erasures mark the table dirty
// and Run vacuums it at most once per interval, so a burst of erasures costs one VACUUM.
type Vacuumer struct {
	db     *storage.DB
	tables []string

	mu    sync.Mutex
	dirty bool
	runs  int
	total time.Duration
	last  time.Duration
}

// NewVacuumer returns a batcher vacuuming tables on PostgreSQL, or nil on SQLite (which
// needs none: secure_delete and storage.DB.Scrub). Services whose erasures delete rows
// that held key material use it for those tables.
func NewVacuumer(db *storage.DB, tables ...string) *Vacuumer {
	if db.Dialect != storage.Postgres {
		return nil
	}
	return &Vacuumer{db: db, tables: tables}
}

// Dirty records that key rows were deleted since the last vacuum.
func (v *Vacuumer) Dirty() {
	v.mu.Lock()
	v.dirty = true
	v.mu.Unlock()
}

// Pending reports whether deleted key rows wait for a vacuum.
func (v *Vacuumer) Pending() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.dirty
}

// VacuumNow vacuums the key table if rows were deleted since the last run and returns
// how long it took (zero when there was nothing to do).
func (v *Vacuumer) VacuumNow(ctx context.Context) (time.Duration, error) {
	v.mu.Lock()
	if !v.dirty {
		v.mu.Unlock()
		return 0, nil
	}
	v.dirty = false
	v.mu.Unlock()
	start := time.Now()
	// VACUUM cannot run inside a transaction; database/sql runs Exec outside one.
	for _, table := range v.tables {
		if _, err := v.db.ExecContext(ctx, `VACUUM `+table); err != nil {
			v.Dirty()
			return 0, err
		}
	}
	d := time.Since(start)
	v.mu.Lock()
	v.runs++
	v.total += d
	v.last = d
	v.mu.Unlock()
	return d, nil
}

// Stats returns the number of vacuums run and their total and last duration.
func (v *Vacuumer) Stats() (runs int, total, last time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.runs, v.total, v.last
}

// Run vacuums every interval while there is something to reclaim, until ctx is done.
func (v *Vacuumer) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = v.VacuumNow(ctx)
		}
	}
}
