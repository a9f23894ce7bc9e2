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
// every core (blockDeflater), the last one closed (final) — together one valid DEFLATE
// stream. The entry is raw, with a data descriptor: its CRC-32 and sizes are known only
// at Close, which writes them into the header the ZIP writer keeps for the central
// directory. Compressing the viewing history was most of the archive step; this spreads
// it over the cores while the step's other work (reading and decrypting the parts)
// continues.
type parallelEntry struct {
	fh     *zip.FileHeader
	d      *blockDeflater
	crc    uint32
	raw    int64
	closed bool
}

// newRawEntry starts entry name in zw as raw DEFLATE data followed by a data
// descriptor; the caller writes compressed bytes and sets the header's CRC-32 and sizes
// before the next entry is created.
func newRawEntry(zw *zip.Writer, name string) (*zip.FileHeader, io.Writer, error) {
	fh := &zip.FileHeader{Name: name, Method: zip.Deflate, Flags: 0x8, ReaderVersion: 20}
	fh.CreatorVersion = 20
	out, err := zw.CreateRaw(fh)
	return fh, out, err
}

// setSizes records an entry's CRC-32 and sizes in its header (for the data descriptor
// and the central directory).
func setSizes(fh *zip.FileHeader, crc uint32, packed, raw int64) {
	fh.CRC32 = crc
	fh.CompressedSize64, fh.UncompressedSize64 = uint64(packed), uint64(raw)
	fh.CompressedSize, fh.UncompressedSize = uint32(min(packed, 1<<32-1)), uint32(min(raw, 1<<32-1))
}

// newParallelEntry starts the entry name in zw; Close must be called before the next
// entry is created.
func newParallelEntry(zw *zip.Writer, name string) (*parallelEntry, error) {
	fh, out, err := newRawEntry(zw, name)
	if err != nil {
		return nil, err
	}
	e := &parallelEntry{fh: fh}
	e.d = newBlockDeflater(out, func(b []byte) { e.crc = crc32.Update(e.crc, crc32.IEEETable, b) })
	return e, nil
}

func (e *parallelEntry) Write(p []byte) (int, error) {
	if e.closed {
		return 0, errors.New("write to a closed archive entry")
	}
	n, err := e.d.Write(p)
	e.raw += int64(n)
	return n, err
}

// Close compresses and writes the last block (final) and records the entry's CRC-32 and
// sizes for its data descriptor and the central directory.
func (e *parallelEntry) Close() error {
	if e.closed {
		return e.d.err
	}
	e.closed = true
	if err := e.d.Close(); err != nil {
		return err
	}
	setSizes(e.fh, e.crc, e.d.packed, e.raw)
	return nil
}

// compressors bounds the blocks being compressed at once, process-wide, to the cores:
// every export's parts and archive share them, so twenty exports at once hold as many
// flate writers as one.
var compressors = make(chan struct{}, runtime.GOMAXPROCS(0))

// blockDeflater compresses what is written to it in independent blocks, several at once:
// each block by its own flate writer ending in a sync flush (byte-aligned, not final),
// and writes the compressed blocks to out in order. Flush ends the blocks so far (what
// is written to out is then a run of DEFLATE blocks that any other such run, or a final
// block, may follow); Close ends them with a final block — a complete DEFLATE stream.
type blockDeflater struct {
	out     io.Writer
	onBlock func([]byte) // sees every block's uncompressed bytes, in order, before it is compressed
	packed  int64        // compressed bytes written to out
	buf     []byte
	queue   []*deflateBlock // submitted, in order
	err     error
	done    bool
}

type deflateBlock struct {
	in   []byte
	out  bytes.Buffer
	done chan error
}

var blockBufs = sync.Pool{New: func() any { b := make([]byte, 0, blockSize); return &b }}

func newBlockDeflater(out io.Writer, onBlock func([]byte)) *blockDeflater {
	return &blockDeflater{out: out, onBlock: onBlock, buf: (*blockBufs.Get().(*[]byte))[:0]}
}

func (d *blockDeflater) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.done {
		return 0, errors.New("write to a closed deflater")
	}
	written := len(p)
	for len(p) > 0 {
		n := min(len(p), blockSize-len(d.buf))
		d.buf, p = append(d.buf, p[:n]...), p[n:]
		if len(d.buf) == blockSize {
			d.submit(false)
			if d.err != nil {
				return 0, d.err
			}
		}
	}
	return written, nil
}

// submit hands the current block to a worker and writes out finished blocks, keeping at
// most two blocks per core in memory; wait writes out every submitted block.
func (d *blockDeflater) submit(final bool) {
	if d.onBlock != nil {
		d.onBlock(d.buf)
	}
	b := &deflateBlock{in: d.buf, done: make(chan error, 1)}
	d.buf = (*blockBufs.Get().(*[]byte))[:0]
	d.queue = append(d.queue, b)
	compressors <- struct{}{}
	go func() {
		defer func() { <-compressors }()
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
	for len(d.queue) > 2*cap(compressors) {
		d.drainOne()
	}
}

// drainOne waits for the oldest block and writes it out.
func (d *blockDeflater) drainOne() {
	b := d.queue[0]
	d.queue = d.queue[1:]
	err := <-b.done
	in := b.in[:0]
	blockBufs.Put(&in)
	if d.err != nil {
		return
	}
	if err != nil {
		d.err = err
		return
	}
	n, err := d.out.Write(b.out.Bytes())
	d.packed += int64(n)
	if err != nil {
		d.err = err
	}
}

// Flush compresses what is buffered (not final) and writes out every block.
func (d *blockDeflater) Flush() error {
	if d.err == nil && len(d.buf) > 0 {
		d.submit(false)
	}
	for len(d.queue) > 0 {
		d.drainOne()
	}
	return d.err
}

// Close compresses what is buffered as the final block, writes out every block and
// releases the buffers.
func (d *blockDeflater) Close() error {
	if d.done {
		return d.err
	}
	if d.err == nil {
		d.submit(true)
	}
	for len(d.queue) > 0 {
		d.drainOne()
	}
	d.release()
	return d.err
}

// Abort waits for the blocks under way and releases the buffers, writing nothing more.
func (d *blockDeflater) Abort() {
	if d.done {
		return
	}
	if d.err == nil {
		d.err = errAborted
	}
	for len(d.queue) > 0 {
		d.drainOne()
	}
	d.release()
}

var errAborted = errors.New("deflater aborted")

func (d *blockDeflater) release() {
	d.done = true
	b := d.buf[:0]
	blockBufs.Put(&b)
	d.buf = nil
}
