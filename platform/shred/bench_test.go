package shred_test

import (
	"context"
	"fmt"
	"testing"

	"lethe.dev/platform/storage"
	"lethe.dev/platform/storage/storagetest"
)

// BenchmarkDestroyAndScrub measures what an erasure adds for its keys: deleting a
// subject's key and scrubbing (SQLite: WAL checkpoint TRUNCATE) in a table of 10,000
// subjects, and on PostgreSQL the batched VACUUM of the key table after a batch of
// erasures (reported as vacuum-ms/batch).
func BenchmarkDestroyAndScrub(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			var db *storage.DB
			if engine == "sqlite" {
				db = storagetest.MustOpenSQLite(b, nil)
			} else {
				db = storagetest.MustOpenPostgres(b, nil)
			}
			ctx := context.Background()
			k := open(b, db)
			const subjects = 10000
			for i := range subjects {
				if _, err := k.AEAD(ctx, fmt.Sprintf("member%06d", i), true); err != nil {
					b.Fatal(err)
				}
			}
			for _, batch := range []int{1, 100} {
				b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
					next := 0
					var vacuum float64
					for b.Loop() {
						for range batch {
							if _, err := k.Destroy(ctx, fmt.Sprintf("member%06d", next%subjects)); err != nil {
								b.Fatal(err)
							}
							next++
						}
						if v := k.Vacuumer(); v != nil {
							d, err := v.VacuumNow(ctx)
							if err != nil {
								b.Fatal(err)
							}
							vacuum += float64(d.Microseconds()) / 1000
						}
						b.StopTimer()
						for i := next - batch; i < next; i++ { // put the keys back for the next round
							if _, err := k.AEAD(ctx, fmt.Sprintf("member%06d", i%subjects), true); err != nil {
								b.Fatal(err)
							}
						}
						b.StartTimer()
					}
					if k.Vacuumer() != nil {
						b.ReportMetric(vacuum/float64(b.N), "vacuum-ms/batch")
					}
				})
			}
		})
	}
}
