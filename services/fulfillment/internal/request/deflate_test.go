package request

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// TestParallelEntryIsOneValidDeflateStream writes entries compressed in parallel blocks
// between ordinary ones and reads the archive back with archive/zip, which checks each
// entry's CRC-32 and sizes against its data: the content must come back byte for byte,
// whatever the block boundaries and write sizes.
func TestParallelEntryIsOneValidDeflateStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var big bytes.Buffer
	for i := 0; big.Len() < 3*blockSize+12345; i++ {
		fmt.Fprintf(&big, `{"id":"ev-%07d","titleId":"title-%d","durationSeconds":%d},`+"\n", i, rng.IntN(500), rng.IntN(7200))
	}
	entries := map[string][]byte{
		"exact.json": bytes.Repeat([]byte("x"), blockSize), // exactly one block
		"big.json":   big.Bytes(),
		"empty.json": nil,
		"tiny.json":  []byte("[]\n"),
	}
	var archive bytes.Buffer
	zw := zip.NewWriter(&archive)
	zw.RegisterCompressor(zip.Deflate, pooledDeflate)
	order := []string{"exact.json", "big.json", "empty.json", "tiny.json"}
	for i, name := range order {
		if i%2 == 1 { // an ordinary entry between the parallel ones
			w, err := zw.Create("plain-" + name)
			if err != nil {
				t.Fatal(err)
			}
			w.Write([]byte("plain " + name))
		}
		e, err := newParallelEntry(zw, name)
		if err != nil {
			t.Fatal(err)
		}
		for rest := entries[name]; len(rest) > 0; { // uneven writes across block boundaries
			n := min(len(rest), 1+rng.IntN(100_000))
			if _, err := e.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(archive.Bytes()), int64(archive.Len()))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc) // archive/zip fails on a CRC-32 or size mismatch
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		rc.Close()
		got[f.Name] = b
	}
	for name, want := range entries {
		if !bytes.Equal(got[name], want) {
			t.Errorf("%s: read back %d bytes, wrote %d", name, len(got[name]), len(want))
		}
	}
	if string(got["plain-big.json"]) != "plain big.json" {
		t.Errorf("ordinary entry between parallel ones: %q", got["plain-big.json"])
	}
	if f := zr.File[2]; f.Name != "big.json" || f.CompressedSize64*3 > f.UncompressedSize64 {
		t.Errorf("%s compressed %d → %d bytes: blocks should still compress JSON more than 3×", f.Name, f.UncompressedSize64, f.CompressedSize64)
	}
}

// BenchmarkArchiveEntry compresses 16 MiB of viewing-history-like JSON into one ZIP
// entry, in parallel blocks and with one ordinary flate writer.
func BenchmarkArchiveEntry(b *testing.B) {
	var data bytes.Buffer
	for i := 0; data.Len() < 16<<20; i++ {
		fmt.Fprintf(&data, `{"id":"ev-%07d","titleId":"title-%d","viewTime":"2020-01-01T00:00:00Z","durationSeconds":60,"deviceType":"tv"},`+"\n", i, i%500)
	}
	for _, parallel := range []bool{false, true} {
		b.Run(fmt.Sprintf("parallel=%v", parallel), func(b *testing.B) {
			b.SetBytes(int64(data.Len()))
			for b.Loop() {
				zw := zip.NewWriter(io.Discard)
				zw.RegisterCompressor(zip.Deflate, pooledDeflate)
				var w io.WriteCloser
				if parallel {
					w, _ = newParallelEntry(zw, "v.json")
				} else {
					cw, _ := zw.Create("v.json")
					w = nopCloser{cw}
				}
				for rest := data.Bytes(); len(rest) > 0; rest = rest[min(len(rest), 256<<10):] {
					w.Write(rest[:min(len(rest), 256<<10)])
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				zw.Close()
			}
		})
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
