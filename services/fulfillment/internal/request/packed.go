package request

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"strings"
)

// Packed staging parts. ExportService writes each part of a dataset as the part's slice
// of the dataset's archive file — the JSON array "[rec,\nrec,\n…" without its closing
// "]\n" — already compressed, so the archive step copies compressed bytes instead of
// decompressing, rewriting and compressing the whole export again:
//
//	{request}/parts/{service}/{seq}.{dataset}.jsonz, decrypted:
//	header   "LPK1", flags (1: the part opens the dataset's array)
//	data     raw DEFLATE blocks, each ending in a sync flush, none final
//	trailer  "LPKT", the part's records, uncompressed and compressed sizes, and the
//	         dataset's running totals after it: records, uncompressed size, CRC-32 and
//	         SHA-256 state (encoding.BinaryMarshaler) of its content so far
//
// The parts of a dataset concatenate into one DEFLATE stream that a final block (the
// closing "]\n") ends, and the last part's trailer gives the ZIP entry's CRC-32 and
// sizes and, with "]\n" added to its SHA-256 state, the manifest's checksum. A resumed
// export reads the running state back from the last part of each dataset it closed;
// the heartbeat carries only the cursor and the next part's number.
const (
	packedSuffix  = ".jsonz"
	packedMagic   = "LPK1"
	trailerMagic  = "LPKT"
	packedHeader  = len(packedMagic) + 1
	flagFirstPart = 1
)

// shaStateSize is the size of a marshaled SHA-256 state.
var shaStateSize = func() int {
	b, err := sha256.New().(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic(err)
	}
	return len(b)
}()

// trailerSize is the size of a part's trailer.
var trailerSize = len(trailerMagic) + 5*8 + 4 + shaStateSize

// partTrailer ends a packed part.
type partTrailer struct {
	First        bool  // from the header: the part opens the dataset's array
	Records      int64 // records in the part
	Raw          int64 // uncompressed bytes of the part
	Packed       int64 // compressed bytes of the part
	TotalRecords int64 // the dataset's records up to and with this part
	TotalRaw     int64 // the dataset's uncompressed bytes so far
	CRC          uint32
	SHA          []byte // marshaled SHA-256 state of the dataset's content so far
}

func (t partTrailer) marshal() []byte {
	b := make([]byte, 0, trailerSize)
	b = append(b, trailerMagic...)
	for _, v := range []int64{t.Records, t.Raw, t.Packed, t.TotalRecords, t.TotalRaw} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	b = binary.BigEndian.AppendUint32(b, t.CRC)
	return append(b, t.SHA...)
}

var errBadPart = errors.New("staging part is damaged")

func parseTrailer(b []byte) (partTrailer, error) {
	if len(b) != trailerSize || string(b[:len(trailerMagic)]) != trailerMagic {
		return partTrailer{}, errBadPart
	}
	b = b[len(trailerMagic):]
	var v [5]int64
	for i := range v {
		v[i] = int64(binary.BigEndian.Uint64(b))
		if v[i] < 0 {
			return partTrailer{}, errBadPart
		}
		b = b[8:]
	}
	t := partTrailer{Records: v[0], Raw: v[1], Packed: v[2], TotalRecords: v[3], TotalRaw: v[4], CRC: binary.BigEndian.Uint32(b)}
	t.SHA = append([]byte(nil), b[4:]...)
	return t, nil
}

// datasetState is the running state of one dataset's archive file while its parts are
// written.
type datasetState struct {
	parts, records, raw int64
	crc                 uint32
	sha                 hash.Hash
}

func newDatasetState() *datasetState { return &datasetState{sha: sha256.New()} }

// restoreState is the state after the part whose trailer is t.
func restoreState(t partTrailer) (*datasetState, error) {
	st := newDatasetState()
	if err := st.sha.(encoding.BinaryUnmarshaler).UnmarshalBinary(t.SHA); err != nil {
		return nil, errBadPart
	}
	st.parts, st.records, st.raw, st.crc = 1, t.TotalRecords, t.TotalRaw, t.CRC
	return st, nil
}

// packedPart writes one packed part into w (an encrypted object).
type packedPart struct {
	w              io.WriteCloser
	d              *blockDeflater
	st             *datasetState
	first          bool
	records, raw   int64
	before         int64 // the dataset's uncompressed bytes before this part
	beforeRecords  int64
	headerFailed   error
	closedOrFailed bool
}

var recordSep = []byte(",\n")

func newPackedPart(w io.WriteCloser, st *datasetState) *packedPart {
	p := &packedPart{w: w, st: st, first: st.parts == 0, before: st.raw, beforeRecords: st.records}
	flags := byte(0)
	if p.first {
		flags = flagFirstPart
	}
	_, p.headerFailed = w.Write(append([]byte(packedMagic), flags))
	p.d = newBlockDeflater(w, func(b []byte) {
		st.crc = crc32.Update(st.crc, crc32.IEEETable, b)
		st.sha.Write(b)
		st.raw += int64(len(b))
	})
	st.parts++
	if p.first {
		p.d.Write([]byte{'['})
	}
	return p
}

// add appends one record (a JSON value on one line).
func (p *packedPart) add(rec []byte) {
	if p.st.records > 0 {
		p.d.Write(recordSep)
	}
	p.d.Write(rec)
	p.st.records++
	p.records++
}

// Close compresses what is left, writes the trailer and closes the object.
func (p *packedPart) Close() error {
	if p.closedOrFailed {
		return errors.New("packed part closed twice")
	}
	p.closedOrFailed = true
	if err := errors.Join(p.headerFailed, p.d.Flush()); err != nil {
		p.d.Abort()
		_ = p.w.Close()
		return err
	}
	p.d.Abort() // everything is written: releases the buffers
	state, err := p.st.sha.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		_ = p.w.Close()
		return err
	}
	t := partTrailer{Records: p.records, Raw: p.st.raw - p.before, Packed: p.d.packed, TotalRecords: p.st.records, TotalRaw: p.st.raw, CRC: p.st.crc, SHA: state}
	if _, err := p.w.Write(t.marshal()); err != nil {
		_ = p.w.Close()
		return err
	}
	return p.w.Close()
}

// Abort closes the object without finishing it (an attempt that failed; the next one
// overwrites or deletes it).
func (p *packedPart) Abort() {
	if p.closedOrFailed {
		return
	}
	p.closedOrFailed = true
	p.d.Abort()
	_ = p.w.Close()
}

// readPacked reads a packed part from r, copies its compressed data to w, and returns
// its trailer, after checking the header, the trailer and the compressed size.
func readPacked(r io.Reader, w io.Writer) (partTrailer, error) {
	first, err := readPackedHeader(r)
	if err != nil {
		return partTrailer{}, err
	}
	t, err := readPackedBody(r, w)
	t.First = first
	return t, err
}

// readPackedHeader reads a packed part's header: whether it opens its dataset's array.
func readPackedHeader(r io.Reader) (first bool, err error) {
	head := make([]byte, packedHeader)
	if _, err := io.ReadFull(r, head); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, errBadPart
		}
		return false, err
	}
	if string(head[:len(packedMagic)]) != packedMagic {
		return false, errBadPart
	}
	return head[len(packedMagic)]&flagFirstPart != 0, nil
}

// readPackedBody copies the compressed data after the header to w and reads the trailer.
func readPackedBody(r io.Reader, w io.Writer) (partTrailer, error) {
	buf := make([]byte, 128<<10)
	held, copied := 0, int64(0) // buf[:held] is read and not yet written
	for {
		n, err := r.Read(buf[held:])
		held += n
		if held == len(buf) || (err != nil && held > trailerSize) {
			k := held - trailerSize
			if _, werr := w.Write(buf[:k]); werr != nil {
				return partTrailer{}, werr
			}
			copied += int64(k)
			held = copy(buf, buf[k:held])
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return partTrailer{}, err
		}
	}
	t, err := parseTrailer(buf[:held])
	if err != nil {
		return partTrailer{}, err
	}
	if t.Packed != copied || t.Raw > t.TotalRaw || t.Records > t.TotalRecords {
		return partTrailer{}, errBadPart
	}
	return t, nil
}

// finalBlock is an empty final DEFLATE block (fixed Huffman codes, end of block only):
// it ends the stream of a part's sync-flushed blocks for a reader.
var finalBlock = []byte{0x03, 0x00}

// packedRecords calls fn with each record of a packed part, in order (the slice is
// valid only during the call), and returns the part's trailer.
func packedRecords(r io.Reader, fn func(rec []byte) error) (partTrailer, error) {
	first, err := readPackedHeader(r)
	if err != nil {
		return partTrailer{}, err
	}
	pr, pw := io.Pipe()
	type result struct {
		t   partTrailer
		err error
	}
	done := make(chan result, 1)
	go func() {
		t, err := readPackedBody(r, pw)
		pw.CloseWithError(err)
		done <- result{t, err}
	}()
	fr := flate.NewReader(io.MultiReader(pr, bytes.NewReader(finalBlock)))
	sc := bufio.NewScanner(fr)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var records int64
	for line := 0; sc.Scan(); line++ {
		b := sc.Bytes()
		if line == 0 && first {
			b = bytes.TrimPrefix(b, []byte{'['}) // the array opens the dataset's first part
		}
		// A record never holds a raw newline: each line is a record and the comma of the
		// separator after it, or that comma alone (the separator that opens a later part).
		b = bytes.TrimSuffix(b, []byte{','})
		if len(b) == 0 {
			continue
		}
		records++
		if err = fn(b); err != nil {
			break
		}
	}
	if err == nil {
		err = sc.Err()
	}
	if err == nil {
		_, err = io.Copy(io.Discard, fr)
	}
	if err != nil {
		pr.CloseWithError(err)
		<-done
		return partTrailer{}, err
	}
	res := <-done
	if res.err != nil {
		return partTrailer{}, res.err
	}
	res.t.First = first
	if records != res.t.Records {
		return partTrailer{}, fmt.Errorf("%w: %d records read, %d written", errBadPart, records, res.t.Records)
	}
	return res.t, nil
}

// isPacked tells a packed part's key from a JSON-lines one (written before packing).
func isPacked(key string) bool { return strings.HasSuffix(key, packedSuffix) }

// eachRecord calls fn with each record of a staging part, packed or JSON lines, in
// order (the slice is valid only during the call).
func (a *Activities) eachRecord(ctx context.Context, requestID, key string, fn func(rec []byte) error) error {
	r, err := a.Archives.NewReader(ctx, requestID, key)
	if err != nil {
		return err
	}
	defer r.Close()
	if isPacked(key) {
		_, err := packedRecords(r, fn)
		return err
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	return sc.Err()
}
