// Package storage opens a service's database, SQLite by default (pure Go, no cgo) or
// PostgreSQL by URL, and applies the service's versioned migrations with goose. Queries
// use $1-style placeholders, which both engines accept.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Dialect is the SQL engine behind a DB.
type Dialect string

// The supported engines.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is an open, migrated database.
type DB struct {
	*sql.DB
	Dialect Dialect
}

// Open opens url and migrates it to the newest version in migrations (a directory of
// goose .sql files written in the SQL both engines accept). URLs:
//
//	sqlite:/var/lib/lethe/identity.db   (or sqlite://relative/path.db)
//	postgres://user@127.0.0.1:5432/db?sslmode=disable
//
// A PostgreSQL URL may carry pool_max_conns=N (pgxpool's name), the most connections the
// process opens to it (default DefaultPoolMaxConns); it is taken off the URL before it
// reaches pgx, which would send it to the server as a run-time parameter.
func Open(ctx context.Context, url string, migrations fs.FS) (*DB, error) {
	db, err := open(url)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: connect to %s database: %w", db.Dialect, err)
	}
	if migrations != nil {
		if err := db.Migrate(ctx, migrations); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// DefaultPoolMaxConns is how many connections a process opens to a PostgreSQL database
// at most when its URL does not say (pool_max_conns).
const DefaultPoolMaxConns = 20

// PoolMaxConns takes the pool_max_conns parameter off a postgres:// URL and returns the
// URL without it and its value (def when absent). A value that is not a whole number of
// at least 1 is an error, which names the parameter but not the URL (it may hold a
// password).
func PoolMaxConns(rawURL string, def int) (string, int, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", 0, errors.New("storage: the PostgreSQL URL does not parse")
	}
	q := u.Query()
	if !q.Has("pool_max_conns") {
		return rawURL, def, nil
	}
	v := q.Get("pool_max_conns")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || len(q["pool_max_conns"]) > 1 {
		return "", 0, fmt.Errorf("storage: pool_max_conns in the PostgreSQL URL must be one whole number of at least 1, not %q", v)
	}
	q.Del("pool_max_conns")
	u.RawQuery = q.Encode()
	return u.String(), n, nil
}

func open(url string) (*DB, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		dsn, maxConns, err := PoolMaxConns(url, DefaultPoolMaxConns)
		if err != nil {
			return nil, err
		}
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("storage: open postgres: %w", err)
		}
		db.SetMaxOpenConns(maxConns)
		db.SetMaxIdleConns(min(10, maxConns))
		db.SetConnMaxIdleTime(5 * time.Minute)
		return &DB{DB: db, Dialect: Postgres}, nil
	case strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//")
		if path == "" {
			return nil, errors.New("storage: sqlite URL needs a file path, e.g. sqlite:data/identity.db")
		}
		if dir := filepath.Dir(path); dir != "." {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("storage: create data directory: %w", err)
			}
		}
		// WAL lets readers run beside the writer; immediate transactions take the write
		// lock up front so concurrent writers queue on busy_timeout instead of failing
		// with SQLITE_BUSY when a read transaction tries to upgrade.
		// secure_delete zeroes deleted content, so an erased row does not linger in free
		// pages (see Scrub for the WAL).
		dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_pragma=secure_delete(1)&_txlock=immediate"
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("storage: open sqlite: %w", err)
		}
		db.SetMaxOpenConns(8)
		return &DB{DB: db, Dialect: SQLite}, nil
	default:
		return nil, errors.New("storage: database URL must start with sqlite: or postgres://")
	}
}

// Migrate applies every pending migration in fsys. On PostgreSQL it holds a session
// advisory lock while it does, so replicas starting together on a fresh database migrate
// one after another instead of racing on the same CREATE statements. The lock id is
// derived from the database and schema, so services sharing a server do not wait for
// each other.
//
// Migrations missing below the newest applied version are applied too (out of order):
// features developed side by side take numbers from separate ranges, so a database that
// already has a later feature's migration still gets an earlier-numbered one when it lands.
// Every migration must therefore be independent of those numbered after it.
func (db *DB) Migrate(ctx context.Context, fsys fs.FS) error {
	dialect := goose.DialectSQLite3
	opts := []goose.ProviderOption{goose.WithAllowOutofOrder(true)}
	if db.Dialect == Postgres {
		dialect = goose.DialectPostgres
		var where string
		if err := db.QueryRowContext(ctx, `SELECT current_database() || '.' || COALESCE(current_schema(), '')`).Scan(&where); err != nil {
			return fmt.Errorf("storage: migrations: %w", err)
		}
		h := fnv.New64a()
		h.Write([]byte("lethe-migrations:" + where))
		// Wait up to 5 minutes (300 × 1 s) for another replica's migration.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64()>>1)), lock.WithLockTimeout(1, 300))
		if err != nil {
			return fmt.Errorf("storage: migrations: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, db.DB, fsys, opts...)
	if err != nil {
		return fmt.Errorf("storage: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("storage: migrate: %w", err)
	}
	return nil
}

// Version returns the newest applied migration version.
func (db *DB) Version(ctx context.Context, fsys fs.FS) (int64, error) {
	dialect := goose.DialectSQLite3
	if db.Dialect == Postgres {
		dialect = goose.DialectPostgres
	}
	p, err := goose.NewProvider(dialect, db.DB, fsys)
	if err != nil {
		return 0, err
	}
	return p.GetDBVersion(ctx)
}

// Scrub makes deleted rows unrecoverable from the engine's files after an erasure. On
// SQLite (which runs with secure_delete) it checkpoints the WAL into the database and
// truncates it, since the WAL still holds the pages as they were before the delete. On
// PostgreSQL it does nothing: dead tuples are reclaimed by VACUUM (see shred.Vacuumer).
func (db *DB) Scrub(ctx context.Context) error {
	if db.Dialect != SQLite {
		return nil
	}
	var busy, logged, checkpointed int
	return db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logged, &checkpointed)
}

// Counts runs several single-value queries (SELECT COUNT(*) … taking the same
// arguments) as one statement — one round trip and one snapshot instead of one each —
// and returns their values in order.
func (db *DB) Counts(ctx context.Context, queries []string, args ...any) ([]int64, error) {
	var b strings.Builder
	b.WriteString("SELECT ")
	out := make([]int64, len(queries))
	dest := make([]any, len(queries))
	for i, q := range queries {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + q + ")")
		dest[i] = &out[i]
	}
	if err := db.QueryRowContext(ctx, b.String(), args...).Scan(dest...); err != nil {
		return nil, err
	}
	return out, nil
}

// Dataset is one kind of row a data-subject report counts: its name, its data category,
// the legal basis for keeping it (empty: none, it must go with an erasure), and the
// query counting a subject's rows (SELECT COUNT(*) …, taking the report's arguments).
type Dataset struct {
	Name, Category, LegalBasis, Count string
}

// HeldRows is how many rows of a Dataset a subject has.
type HeldRows struct {
	Dataset
	Rows int64
}

// Held counts the subject's rows of every dataset in one statement (Counts) and returns
// the datasets that have any, in the order given.
func (db *DB) Held(ctx context.Context, sets []Dataset, args ...any) ([]HeldRows, error) {
	queries := make([]string, len(sets))
	for i, d := range sets {
		queries[i] = d.Count
	}
	counts, err := db.Counts(ctx, queries, args...)
	if err != nil {
		return nil, err
	}
	var out []HeldRows
	for i, d := range sets {
		if counts[i] > 0 {
			out = append(out, HeldRows{Dataset: d, Rows: counts[i]})
		}
	}
	return out, nil
}

// InTx runs fn in a transaction, committing when it returns nil.
func (db *DB) InTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// IsUniqueViolation reports whether err is a unique-constraint violation on either engine.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "SQLSTATE 23505")
}
