package preferences_test

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/storage/storagetest"
)

// BenchmarkListViewingEventsPage reads one 50-item page from the middle of a 100,000-item
// history over loopback gRPC, on SQLite and (when configured) PostgreSQL.
func BenchmarkListViewingEventsPage(b *testing.B) {
	for engine := range storagetest.URLs(b) {
		b.Run(engine, func(b *testing.B) { benchListPage(b, storagetest.URLs(b)[engine]) })
	}
}

func benchListPage(b *testing.B, url string) {
	h := start(b, url)
	seedHistory(b, h, alice, 100_000)
	ctx := context.Background()
	first, err := h.client.ListViewingEvents(ctx, &preferencesv1.ListViewingEventsRequest{Parent: alice, PageSize: 1000})
	if err != nil {
		b.Fatal(err)
	}
	token := first.GetNextPageToken()
	for b.Loop() {
		page, err := h.client.ListViewingEvents(ctx, &preferencesv1.ListViewingEventsRequest{Parent: alice, PageSize: 50, PageToken: token})
		if err != nil || len(page.GetViewingEvents()) != 50 {
			b.Fatal(err)
		}
	}
}

// peakHeap samples the in-use heap until stop is closed.
func peakHeap(stop <-chan struct{}) *atomic.Uint64 {
	var peak atomic.Uint64
	go func() {
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return &peak
}

// BenchmarkExport streams a member's whole export (the client discards chunks as a
// real exporter would after writing them) and reports the peak in-use heap of the
// process, server and client together: it should stay flat from 10,000 to 100,000 items
// (BenchmarkExport/<engine>/items=100000 is the 100k export).
func BenchmarkExport(b *testing.B) {
	// Each run gets a fresh database: the benchmark function runs more than once.
	for engine := range storagetest.URLs(b) {
		for _, n := range []int{10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/items=%d", engine, n), func(b *testing.B) { benchExport(b, storagetest.URLs(b)[engine], n) })
		}
	}
}

func benchExport(b *testing.B, url string, n int) {
	h := start(b, url)
	seedHistory(b, h, alice, n)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := make(chan struct{})
	var once sync.Once
	peak := peakHeap(stop)
	records := 0
	for b.Loop() {
		stream, err := h.subject.ExportSubjectData(context.Background(), &subjectv1.ExportSubjectDataRequest{Subject: alice})
		if err != nil {
			b.Fatal(err)
		}
		records = 0
		for {
			c, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			records += len(c.GetRecords())
		}
	}
	once.Do(func() { close(stop) })
	runtime.ReadMemStats(&after)
	if records < n {
		b.Fatalf("exported %d records, want at least %d", records, n)
	}
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/(1<<20), "alloc-MiB/op")
	b.ReportMetric(float64(n)/(float64(b.Elapsed().Seconds())/float64(b.N)), "records/s")
}
