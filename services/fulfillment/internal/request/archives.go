package request

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"lethe.dev/platform/shred"
)

// Archives is encrypted archive storage. Every object of an export — staging parts and
// the ZIP — is written through a Tink streaming AEAD (AES-256-GCM-HKDF, 4 KiB segments)
// under the export's own key in fulfillment's key table (subject "archive/{request}"),
// bound to the object's key. Destroying that key (at expiry or erasure) leaves whatever
// the bucket, its backups or the disk still hold unreadable.
type Archives struct {
	Bucket *blob.Bucket
	Keys   *shred.Keys
}

// ArchiveSubject is the key-table subject of one export's key.
func ArchiveSubject(requestID string) string { return "archive/" + requestID }

// restrict makes files the bucket creates on disk readable by the service user only.
func restrict(as func(any) bool) error {
	var f *os.File
	if as(&f) {
		return f.Chmod(0o600)
	}
	return nil
}

// NewWriter returns a writer that encrypts into object key of the request's export.
// Close finishes both the ciphertext and the object.
func (a *Archives) NewWriter(ctx context.Context, requestID, key string) (io.WriteCloser, error) {
	s, err := a.Keys.Streaming(ctx, ArchiveSubject(requestID), true)
	if err != nil {
		return nil, err
	}
	w, err := a.Bucket.NewWriter(ctx, key, &blob.WriterOptions{ContentType: "application/octet-stream", BeforeWrite: restrict})
	if err != nil {
		return nil, err
	}
	// The encrypter writes one 4 KiB segment at a time; the buffer turns those into
	// large writes to the object (a system call each on the file driver).
	buf := bufio.NewWriterSize(w, objectBuffer)
	ew, err := s.NewEncryptingWriter(buf, []byte(key))
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	return &encWriter{enc: ew, buf: buf, obj: w}, nil
}

// objectBuffer is the read and write buffer between the streaming AEAD's small segments
// and an object.
const objectBuffer = 64 << 10

type encWriter struct {
	enc io.WriteCloser
	buf *bufio.Writer
	obj *blob.Writer
}

func (w *encWriter) Write(p []byte) (int, error) { return w.enc.Write(p) }

func (w *encWriter) Close() error {
	err := w.enc.Close()
	if err == nil {
		err = w.buf.Flush()
	}
	return errors.Join(err, w.obj.Close())
}

// NewReader decrypts object key of the request's export from the start.
func (a *Archives) NewReader(ctx context.Context, requestID, key string) (io.ReadCloser, error) {
	s, err := a.Keys.Streaming(ctx, ArchiveSubject(requestID), false)
	if err != nil {
		return nil, err
	}
	r, err := a.Bucket.NewReader(ctx, key, nil)
	if err != nil {
		return nil, err
	}
	dr, err := s.NewDecryptingReader(bufio.NewReaderSize(r, objectBuffer), []byte(key))
	if err != nil {
		r.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{dr, r}, nil
}

// Seeker is a decrypted object that seeks, for ranged downloads. Tink's Go streaming
// AEAD decrypts forward only, so a seek backwards reopens the object and a seek forwards
// decrypts and discards up to the offset; every segment served is still authenticated.
type Seeker struct {
	ctx              context.Context
	a                *Archives
	requestID, key   string
	size, pos, avail int64
	r                io.ReadCloser
	ModTime          time.Time
}

// OpenSeeker opens object key of the request's export whose plaintext is size bytes.
func (a *Archives) OpenSeeker(ctx context.Context, requestID, key string, size int64) (*Seeker, error) {
	attrs, err := a.Bucket.Attributes(ctx, key)
	if err != nil {
		return nil, err
	}
	if _, err := a.Keys.Streaming(ctx, ArchiveSubject(requestID), false); err != nil {
		return nil, err
	}
	return &Seeker{ctx: ctx, a: a, requestID: requestID, key: key, size: size, ModTime: attrs.ModTime}, nil
}

// Read implements io.Reader.
func (s *Seeker) Read(p []byte) (int, error) {
	if s.pos >= s.size {
		return 0, io.EOF
	}
	if s.r == nil || s.avail > s.pos {
		if s.r != nil {
			s.r.Close()
		}
		r, err := s.a.NewReader(s.ctx, s.requestID, s.key)
		if err != nil {
			return 0, err
		}
		s.r, s.avail = r, 0
	}
	if s.avail < s.pos {
		n, err := io.CopyN(io.Discard, s.r, s.pos-s.avail)
		s.avail += n
		if err != nil {
			return 0, err
		}
	}
	n, err := s.r.Read(p)
	s.pos += int64(n)
	s.avail += int64(n)
	return n, err
}

// Seek implements io.Seeker.
func (s *Seeker) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += s.pos
	case io.SeekEnd:
		offset += s.size
	default:
		return 0, fmt.Errorf("seek: bad whence %d", whence)
	}
	if offset < 0 {
		return 0, errors.New("seek: negative offset")
	}
	s.pos = offset
	return offset, nil
}

// Close closes the underlying object.
func (s *Seeker) Close() error {
	if s.r != nil {
		return s.r.Close()
	}
	return nil
}

// DeleteExport deletes every object of the request's export (archive and staging parts)
// and destroys its key. Idempotent.
func (a *Archives) DeleteExport(ctx context.Context, requestID string) error {
	if err := a.DeletePrefix(ctx, requestID+"/"); err != nil {
		return err
	}
	_, err := a.Keys.Destroy(ctx, ArchiveSubject(requestID))
	return err
}

// DeletePrefix deletes every object under prefix.
func (a *Archives) DeletePrefix(ctx context.Context, prefix string) error {
	it := a.Bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if obj.IsDir {
			continue
		}
		if err := a.Bucket.Delete(ctx, obj.Key); err != nil && !isNotFound(err) {
			return err
		}
	}
}

// Count counts the objects under prefix (the verification sweep).
func (a *Archives) Count(ctx context.Context, prefix string) (int, error) {
	n := 0
	it := a.Bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if !obj.IsDir {
			n++
		}
	}
}

func isNotFound(err error) bool { return gcerrors.Code(err) == gcerrors.NotFound }
