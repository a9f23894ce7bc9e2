package request

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"sync"
)

// deflaters holds flate writers at BestSpeed for archive entries: a writer is ~1 MiB of
// tables and windows, and an archive writes one entry per dataset, so a new writer per
// entry was most of the archive step's garbage.
var deflaters = sync.Pool{New: func() any {
	fw, _ := flate.NewWriter(io.Discard, flate.BestSpeed) // BestSpeed is a valid level
	return fw
}}

// pooledDeflate is the ZIP writer's Deflate compressor for the small entries (manifest,
// README, report): a pooled flate writer reset to out, returned once the entry closes.
func pooledDeflate(out io.Writer) (io.WriteCloser, error) {
	fw := deflaters.Get().(*flate.Writer)
	fw.Reset(out)
	return &pooledDeflater{fw}, nil
}

type pooledDeflater struct{ *flate.Writer }

func (d *pooledDeflater) Close() error {
	if d.Writer == nil {
		return nil
	}
	err := d.Writer.Close()
	d.Writer.Reset(io.Discard) // drop the reference to the entry's writer
	deflaters.Put(d.Writer)
	d.Writer = nil
	return err
}

// blockSize is the uncompressed size of one independently compressed block of a large
// entry. Each block starts with an empty dictionary, which costs little at this size
// (DEFLATE's window is 32 KiB).
const blockSize = 256 << 10

// parallelEntry writes one deflated ZIP entry whose content is compressed in blocks on
// every core: each block by its own flate writer ending in a sync flush (byte-aligned,
// not final), the last one closed (final), and the compressed blocks are written in
// order — together one valid DEFLATE stream. The entry is raw, with a data descriptor:
// its CRC-32 and sizes are known only at Close, which writes them into the header the
// ZIP writer keeps for the central directory. Compressing the viewing history was most
// of the archive step; this spreads it over the cores while the step's other work (reading and
// decrypting the parts) continues.
type parallelEntry struct {
	fh      *zip.FileHeader
	out     io.Writer
	crc     uint32
	raw     int64
	packed  int64
	buf     []byte
	queue   []*deflateBlock // submitted, in order
	workers chan struct{}
	err     error
	closed  bool
}

type deflateBlock struct {
	in   []byte
	out  bytes.Buffer
	done chan error
}

var blockBufs = sync.Pool{New: func() any { b := make([]byte, 0, blockSize); return &b }}

// newParallelEntry starts the entry name in zw; Close must be called before the next
// entry is created.
func newParallelEntry(zw *zip.Writer, name string) (*parallelEntry, error) {
	fh := &zip.FileHeader{Name: name, Method: zip.Deflate, Flags: 0x8, ReaderVersion: 20}
	fh.CreatorVersion = 20
	out, err := zw.CreateRaw(fh)
	if err != nil {
		return nil, err
	}
	n := runtime.GOMAXPROCS(0)
	return &parallelEntry{fh: fh, out: out, workers: make(chan struct{}, n), buf: *blockBufs.Get().(*[]byte)}, nil
}

func (e *parallelEntry) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if e.closed {
		return 0, errors.New("write to a closed archive entry")
	}
	e.crc = crc32.Update(e.crc, crc32.IEEETable, p)
	e.raw += int64(len(p))
	written := len(p)
	for len(p) > 0 {
		n := min(len(p), blockSize-len(e.buf))
		e.buf, p = append(e.buf, p[:n]...), p[n:]
		if len(e.buf) == blockSize {
			e.submit(false)
			if e.err != nil {
				return 0, e.err
			}
		}
	}
	return written, nil
}

// submit hands the current block to a worker and writes out finished blocks, keeping at
// most two blocks per core in memory.
func (e *parallelEntry) submit(final bool) {
	b := &deflateBlock{in: e.buf, done: make(chan error, 1)}
	e.buf = (*blockBufs.Get().(*[]byte))[:0]
	e.queue = append(e.queue, b)
	e.workers <- struct{}{}
	go func() {
		defer func() { <-e.workers }()
		fw := deflaters.Get().(*flate.Writer)
		fw.Reset(&b.out)
		_, err := fw.Write(b.in)
		if err == nil && final {
			err = fw.Close()
		} else if err == nil {
			err = fw.Flush()
		}
		fw.Reset(io.Discard)
		deflaters.Put(fw)
		b.done <- err
	}()
	for len(e.queue) > 2*cap(e.workers) || (final && len(e.queue) > 0) {
		e.drainOne()
	}
}

// drainOne waits for the oldest block and writes it out.
func (e *parallelEntry) drainOne() {
	b := e.queue[0]
	e.queue = e.queue[1:]
	err := <-b.done
	in := b.in[:0]
	blockBufs.Put(&in)
	if e.err != nil {
		return
	}
	if err != nil {
		e.err = err
		return
	}
	n, err := e.out.Write(b.out.Bytes())
	e.packed += int64(n)
	if err != nil {
		e.err = err
	}
}

// Close compresses and writes the last block (final) and records the entry's CRC-32 and
// sizes for its data descriptor and the central directory.
func (e *parallelEntry) Close() error {
	if e.closed {
		return e.err
	}
	e.closed = true
	e.submit(true)
	blockBufs.Put(&e.buf)
	if e.err != nil {
		return e.err
	}
	e.fh.CRC32 = e.crc
	e.fh.CompressedSize64, e.fh.UncompressedSize64 = uint64(e.packed), uint64(e.raw)
	e.fh.CompressedSize, e.fh.UncompressedSize = uint32(min(e.packed, 1<<32-1)), uint32(min(e.raw, 1<<32-1))
	return nil
}
