package request

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"gocloud.dev/blob"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/storage"
	"lethe.dev/services/fulfillment/internal/complaint"
)

// ErrPermanent is the error type of failures retrying cannot fix.
const ErrPermanent = "PERMANENT"

// permanent marks errors that retrying cannot fix (bad input, unknown member).
func permanent(err error) error {
	if memberHeldStatus(err) {
		return errMemberHeld()
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.PermissionDenied:
		return temporal.NewNonRetryableApplicationError("permanent failure: "+status.Code(err).String(), ErrPermanent, nil)
	}
	return err
}

// Activities are the steps of the request workflows.
type Activities struct {
	DB          *storage.DB
	Identity    identityv1.IdentityServiceClient
	Preferences preferencesv1.PreferencesServiceClient
	Sharing     sharingv1.SharingServiceClient
	Subjects    map[string]subjectv1.DataSubjectServiceClient // by service name
	Archives    *Archives                                     // encrypted archive storage: a directory in dev, an object store in production
	Temporal    client.Client                                 // stops a member's running export when they are erased
	Signer      tink.Signer                                   // the receipt keyset's primary key (raw Ed25519)
	KeyID       string                                        // that key's id, named in every receipt it signs
	Now         func() time.Time
	// StateChanged, when set, is told after every state change (the Data Rights
	// Protocol logs the statuses of agents' requests from it).
	StateChanged func(ctx context.Context, requestID string) error
	// Complaints, when set, has the member's complaint texts cleared by their erasure
	// (with fulfillment's own copies, EraseArchives).
	Complaints *complaint.Store
	// Own, when set, gives fulfillment's own records of the member (privacy requests,
	// complaints) for the access archive's fulfillment/ files.
	Own OwnData
	// FileErasure files an erasure of the member through the intake (idempotent by
	// clientRequestID) and returns the request's id; used when a disabled account's grace
	// period ends (DisabledAccount).
	FileErasure func(ctx context.Context, memberID, clientRequestID string) (string, error)

	// tombstones remembers requests' tombstone ids (fixed when the request is filed),
	// which five of an erasure's steps need: one read per erasure instead of five.
	tombstones   sync.Map // request id → tombstone id
	tombstoneLen atomic.Int64
}

// RequestRef names a request and its member.
type RequestRef struct {
	RequestID string
	MemberID  string
}

func (r RequestRef) member() string { return "members/" + r.MemberID }

// SetStateInput records a state.
type SetStateInput struct {
	RequestID string
	State     string
	// Steps are stored with the state when WithSteps is set (lean-bookkeeping runs keep
	// progress in the workflow and write it only with state changes).
	Steps     []Step
	WithSteps bool
}

// SetState records a request's state in the read model, and its progress with it when
// the input carries the steps.
func (a *Activities) SetState(ctx context.Context, in SetStateInput) error {
	var progress *string
	if in.WithSteps { // the steps go with the state, in one statement
		raw, _ := json.Marshal(in.Steps)
		p := string(raw)
		progress = &p
	}
	if err := setState(ctx, a.DB, in.RequestID, in.State, progress, a.Now()); err != nil {
		return err
	}
	if a.StateChanged != nil {
		return a.StateChanged(ctx, in.RequestID)
	}
	return nil
}

// ProgressInput records progress.
type ProgressInput struct {
	RequestID string
	Steps     []Step
}

// SaveProgress stores the steps for GetPrivacyRequest.
func (a *Activities) SaveProgress(ctx context.Context, in ProgressInput) error {
	raw, _ := json.Marshal(in.Steps)
	_, err := a.DB.ExecContext(ctx, `UPDATE requests SET progress = $1 WHERE id = $2`, string(raw), in.RequestID)
	return err
}

// EscalationInput records an escalation level.
type EscalationInput struct {
	RequestID string
	Level     string
}

// RecordEscalation records an escalation (once per level); a breach also marks the
// request breached, so it shows in the operators' overdue list.
func (a *Activities) RecordEscalation(ctx context.Context, in EscalationInput) error {
	if _, err := a.DB.ExecContext(ctx, `INSERT INTO escalations (request_id, level, created_at) VALUES ($1, $2, $3) ON CONFLICT (request_id, level) DO NOTHING`,
		in.RequestID, in.Level, a.Now().UnixMicro()); err != nil {
		return err
	}
	if in.Level == "breach" || len(in.Level) > 13 && in.Level[:13] == "onward-breach" {
		if _, err := a.DB.ExecContext(ctx, `UPDATE requests SET breached = TRUE WHERE id = $1`, in.RequestID); err != nil {
			return err
		}
		activity.GetLogger(ctx).Warn("privacy request escalation", "request", in.RequestID, "level", in.Level)
	}
	return nil
}

// SendVerification asks identity to email the member a one-time code and records the
// challenge id.
func (a *Activities) SendVerification(ctx context.Context, in RequestRef) error {
	ch, err := a.Identity.SendVerificationCode(ctx, &identityv1.SendVerificationCodeRequest{Name: in.member(),
		Purpose: identityv1.VerificationPurpose_VERIFICATION_PURPOSE_PRIVACY_REQUEST, Reference: in.RequestID})
	if err != nil {
		return permanent(err)
	}
	_, err = a.DB.ExecContext(ctx, `UPDATE requests SET challenge_id = $1 WHERE id = $2`, ch.GetChallengeId(), in.RequestID)
	return err
}

// ExportInput exports one service's data.
type ExportInput struct {
	RequestID string
	MemberID  string
	Service   string
}

// ExportResult counts what was exported.
type ExportResult struct {
	Service string
	Records int64
}

// exportProgress is the heartbeat: the cursor to resume from and the sequence number
// of the next part, so a resumed attempt overwrites whatever a crashed one wrote after
// its last heartbeat. Packed is set by attempts that write packed parts: one that finds
// the heartbeat of an attempt that wrote JSON lines (before packing) starts over.
// Nothing else goes in: the running checksums of the member's data stay in the
// encrypted parts.
type exportProgress struct {
	Cursor  string
	NextSeq int
	Records int64
	Packed  bool
	Done    bool // ExportAll: the service's stream ended and its last part is closed
}

func partsPrefix(requestID, service string) string {
	return requestID + "/parts/" + service + "/"
}

// partRecords is how many records a staging part holds at most: a part is one encrypted
// object and one heartbeat, so several stream messages go into each.
const partRecords = 20_000

// ExportService streams one service's data for the member into archive storage, a few
// messages per object ({request}/parts/{service}/{seq}.{dataset}.jsonz, packed parts:
// the dataset's archive file, compressed, in slices — see packed.go), so any worker can
// build the archive later. It heartbeats after every part it closes, with the cursor of
// the last message in it; after a crash the next attempt resumes from there, reading the
// running state of each dataset back from its last part, and overwrites whatever was
// written after it.
func (a *Activities) ExportService(ctx context.Context, in ExportInput) (ExportResult, error) {
	var prog exportProgress
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &prog); err != nil {
			return ExportResult{}, err
		}
	}
	beats := startHeartbeats(ctx, heartbeatQuiet)
	defer beats.stop()
	res, _, err := a.exportOne(ctx, in, prog, beats.beat)
	return res, err
}

// ExportAllInput exports every data-holding service's data in one activity, then
// builds the archive.
type ExportAllInput struct {
	RequestID string
	MemberID  string
	Services  []string
	// Archive is the archive step once every service is exported; its ExpiresAt is set
	// then, ArchiveTTL after.
	Archive    *ArchiveInput
	ArchiveTTL time.Duration
}

// ExportAllResult is what ExportAll exported (in the order of its input's services) and
// the archive it built.
type ExportAllResult struct {
	Exports []ExportResult
	Archive ArchiveResult
}

// exportAllProgress is ExportAll's heartbeat: each service's progress (cursor, next
// part, records so far; Done once its stream ended and its last part is closed).
type exportAllProgress struct {
	Services map[string]exportProgress
}

// ExportAll streams every service's data into archive storage at once, as ExportService
// does for one, then builds the archive as BuildArchive does (runs since "export-all"
// ask for it instead of an activity per service and one for the archive: one task and
// one completion instead of four, and no workflow task between them). A service that
// fails retryably does not stop the others; the retry resumes each service from its last
// heartbeated progress and skips those that finished, and the archive step is
// idempotent.
func (a *Activities) ExportAll(ctx context.Context, in ExportAllInput) (ExportAllResult, error) {
	var prog exportAllProgress
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &prog); err != nil {
			return ExportAllResult{}, err
		}
	}
	if prog.Services == nil {
		prog.Services = map[string]exportProgress{}
	}
	beats := startHeartbeats(ctx, heartbeatQuiet)
	defer beats.stop()
	exports, err := a.exportAll(ctx, in, &prog, beats)
	if err != nil || in.Archive == nil {
		return ExportAllResult{Exports: exports}, err
	}
	archive := *in.Archive
	archive.ExpiresAt = a.Now().Add(in.ArchiveTTL)
	// The archive step heartbeats the exports' final progress: every service done.
	done := exportAllProgress{Services: maps.Clone(prog.Services)}
	res, err := a.buildArchive(ctx, archive, func(string) { beats.beat(done) })
	return ExportAllResult{Exports: exports, Archive: res}, err
}

// exportAll runs every service's export from prog, which it keeps up to date and
// heartbeats.
func (a *Activities) exportAll(ctx context.Context, in ExportAllInput, prog *exportAllProgress, beats *heartbeats) ([]ExportResult, error) {
	var mu sync.Mutex
	record := func(svc string, p exportProgress) {
		mu.Lock()
		defer mu.Unlock()
		prog.Services[svc] = p
		snapshot := exportAllProgress{Services: maps.Clone(prog.Services)}
		beats.beat(snapshot)
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]ExportResult, len(in.Services))
	errs := make([]error, len(in.Services))
	var wg sync.WaitGroup
	for i, svc := range in.Services {
		mu.Lock()
		from := prog.Services[svc]
		mu.Unlock()
		if from.Done {
			results[i] = ExportResult{Service: svc, Records: from.Records}
			continue
		}
		wg.Go(func() {
			res, last, err := a.exportOne(actx, ExportInput{RequestID: in.RequestID, MemberID: in.MemberID, Service: svc}, from, func(p any) { record(svc, p.(exportProgress)) })
			if err != nil {
				errs[i] = err
				if isPermanent(err) {
					cancel() // the export fails whatever the others do
				}
				return
			}
			last.Done = true
			record(svc, last)
			results[i] = res
		})
	}
	wg.Wait()
	for _, err := range errs {
		if isPermanent(err) {
			return nil, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return results, nil
}

// ArchiveExpiryTime is when a request's archive link expires, as the archive step recorded
// it; Pending while the request is open and no archive is recorded yet (the export is
// still under way).
type ArchiveExpiryTime struct {
	At      time.Time
	Pending bool
}

// ArchiveExpiresAt answers when the request's archive link expires (zero when there is
// no archive: the export failed or was erased).
func (a *Activities) ArchiveExpiresAt(ctx context.Context, in RequestRef) (ArchiveExpiryTime, error) {
	var at sql.NullInt64
	var path string
	var open bool
	if err := a.DB.QueryRowContext(ctx, `SELECT archive_path, archive_expires_at, is_open FROM requests WHERE id = $1`, in.RequestID).Scan(&path, &at, &open); err != nil {
		return ArchiveExpiryTime{}, err
	}
	if path == "" || !at.Valid {
		return ArchiveExpiryTime{Pending: open}, nil
	}
	return ArchiveExpiryTime{At: time.UnixMicro(at.Int64)}, nil
}

// isPermanent tells the errors that retrying cannot fix.
func isPermanent(err error) bool {
	var app *temporal.ApplicationError
	return errors.As(err, &app) && app.NonRetryable()
}

// exportOne streams one service's data into packed parts from prog (an earlier
// attempt's last heartbeat, or none), handing beat the progress after every part it
// closes, and returns the result and the final progress.
func (a *Activities) exportOne(ctx context.Context, in ExportInput, prog exportProgress, beat func(any)) (ExportResult, exportProgress, error) {
	client, ok := a.Subjects[in.Service]
	if !ok {
		return ExportResult{}, prog, temporal.NewNonRetryableApplicationError("unknown service", ErrPermanent, nil)
	}
	if !prog.Packed {
		prog = exportProgress{Packed: true} // nothing written yet, or JSON lines: from the start
	}
	if err := a.stillWanted(ctx, in.RequestID); err != nil {
		return ExportResult{}, prog, err
	}
	prefix := partsPrefix(in.RequestID, in.Service)
	if err := a.deleteFrom(ctx, prefix, prog.NextSeq); err != nil {
		return ExportResult{}, prog, err
	}
	states, err := a.partStates(ctx, in.RequestID, prefix, prog.NextSeq)
	if err != nil {
		return ExportResult{}, prog, err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := client.ExportSubjectData(sctx, &subjectv1.ExportSubjectDataRequest{Subject: "members/" + in.MemberID, RequestId: in.RequestID, Cursor: prog.Cursor})
	if err != nil {
		return ExportResult{}, prog, permanent(err)
	}
	chunks := receive(sctx, stream)
	// The open part: its dataset, writer, and the progress once it is closed.
	var (
		part    *packedPart
		dataset string
		pending = prog
	)
	closePart := func() error {
		if part == nil {
			return nil
		}
		err := part.Close()
		part = nil
		if err != nil {
			return err
		}
		pending.NextSeq++
		prog = pending
		beat(prog)
		return nil
	}
	defer func() {
		if part != nil {
			part.Abort()
		}
	}()
	inPart := 0
	for {
		r, ok := <-chunks
		if !ok {
			if err := sctx.Err(); err != nil {
				return ExportResult{}, prog, err // cancelled, not the end of the stream
			}
			break
		}
		chunk := r.chunk
		if r.err != nil {
			return ExportResult{}, prog, permanent(r.err)
		}
		if part != nil && (chunk.GetDataset() != dataset || inPart+len(chunk.GetRecords()) > partRecords) {
			if err := closePart(); err != nil {
				return ExportResult{}, prog, err
			}
		}
		if part == nil {
			// An erasure of the member closes the request: stop before writing more of them.
			if err := a.stillWanted(ctx, in.RequestID); err != nil {
				return ExportResult{}, prog, err
			}
			dataset = chunk.GetDataset()
			key := fmt.Sprintf("%s%06d.%s%s", prefix, pending.NextSeq, dataset, packedSuffix)
			w, err := a.Archives.NewWriter(ctx, in.RequestID, key)
			if err != nil {
				return ExportResult{}, prog, err
			}
			st := states[dataset]
			if st == nil {
				st = newDatasetState()
				states[dataset] = st
			}
			part, inPart = newPackedPart(w, st), 0
		}
		for _, rec := range chunk.GetRecords() {
			part.add(rec)
		}
		inPart += len(chunk.GetRecords())
		pending.Cursor = chunk.GetCursor()
		pending.Records += int64(len(chunk.GetRecords()))
	}
	if err := closePart(); err != nil {
		return ExportResult{}, prog, err
	}
	return ExportResult{Service: in.Service, Records: prog.Records}, prog, nil
}

// receiveAhead is how many stream messages an export reads ahead of its part writer.
const receiveAhead = 8

// received is one message of an export stream, or the error that ended it.
type received struct {
	chunk *subjectv1.ExportSubjectDataResponse
	err   error
}

// receive reads the stream ahead of the part writer, a few messages deep, so the service
// keeps sending while a part is compressed, encrypted or closed. The channel closes at
// the end of the stream, after its error if any, or when ctx is done.
func receive(ctx context.Context, stream grpc.ServerStreamingClient[subjectv1.ExportSubjectDataResponse]) <-chan received {
	ch := make(chan received, receiveAhead)
	go func() {
		defer close(ch)
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			select {
			case ch <- received{chunk, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// partStates reads back, for a resumed export, the running state of every dataset after
// the last part (before sequence number next) that was closed for it.
func (a *Activities) partStates(ctx context.Context, requestID, prefix string, next int) (map[string]*datasetState, error) {
	states := map[string]*datasetState{}
	if next == 0 {
		return states, nil
	}
	sets, err := a.datasets(ctx, prefix)
	if err != nil {
		return nil, err
	}
	for _, set := range sets {
		last := set.keys[len(set.keys)-1]
		if !isPacked(last) {
			return nil, fmt.Errorf("resuming an export: part %d of a dataset is not packed", len(set.keys)-1)
		}
		r, err := a.Archives.NewReader(ctx, requestID, last)
		if err != nil {
			return nil, err
		}
		t, err := readPacked(r, io.Discard)
		r.Close()
		if err != nil {
			return nil, err
		}
		if states[set.dataset], err = restoreState(t); err != nil {
			return nil, err
		}
	}
	return states, nil
}

// stillWanted fails permanently once the request is closed (an erasure of the member
// stopped it), so no worker writes more of the member's data.
func (a *Activities) stillWanted(ctx context.Context, requestID string) error {
	var open bool
	if err := a.DB.QueryRowContext(ctx, `SELECT is_open FROM requests WHERE id = $1`, requestID).Scan(&open); err != nil {
		return err
	}
	if !open {
		return temporal.NewNonRetryableApplicationError("the request was closed", ErrPermanent, nil)
	}
	return nil
}

// deleteFrom removes parts under prefix whose sequence number is fromSeq or later.
func (a *Activities) deleteFrom(ctx context.Context, prefix string, fromSeq int) error {
	it := a.Archives.Bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var seq int
		if _, err := fmt.Sscanf(strings.TrimPrefix(obj.Key, prefix), "%06d.", &seq); err == nil && seq >= fromSeq {
			if err := a.Archives.Bucket.Delete(ctx, obj.Key); err != nil {
				return err
			}
		}
	}
}

// ArchiveInput builds the archive.
type ArchiveInput struct {
	RequestID string
	Services  []string
	ExpiresAt time.Time
	// DeleteParts deletes the staging parts once the archive is written (lean-bookkeeping
	// runs; older runs delete them in a DeleteParts activity of their own).
	DeleteParts bool
	// Portability builds the portability form: one portability.json in the documented
	// schema (docs/portability.md) instead of a file per dataset.
	Portability bool
	// NotifyMember, when set (export-tail runs), is the member told that the archive is
	// ready once it is written and recorded; older runs notify in an activity of their own.
	NotifyMember string
}

// ArchiveResult describes the archive.
type ArchiveResult struct {
	Path    string
	Size    int64
	SHA256  string
	Records int64
}

// ManifestFile is one file of the archive.
type ManifestFile struct {
	Path          string `json:"path"`
	Records       int64  `json:"records"`
	SHA256        string `json:"sha256"`
	SchemaVersion int    `json:"schema_version"`
}

// Manifest describes an export archive.
type Manifest struct {
	RequestID string         `json:"request_id"`
	Created   time.Time      `json:"created"`
	Files     []ManifestFile `json:"files"`
}

const archiveReadme = `Your data, as held by each of our systems.

Each folder is one system; each .json file is one kind of data, as a JSON array of
records. manifest.json lists every file with its record count and SHA-256 checksum.
report.html explains, system by system, what we hold, why, from where, for how long,
who received it, and your rights; open it in any browser, no connection needed.
This archive contains personal data: store it safely.
`

// ArchiveKey is where a request's archive is stored.
func ArchiveKey(requestID string) string { return requestID + "/export.zip" }

// countingWriter counts bytes written.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BuildArchive streams the exported parts into one ZIP in archive storage — a JSON array
// per service and dataset, manifest.json and README.txt — so memory stays flat whatever
// the size.
func (a *Activities) BuildArchive(ctx context.Context, in ArchiveInput) (ArchiveResult, error) {
	beats := startHeartbeats(ctx, heartbeatQuiet)
	defer beats.stop()
	return a.buildArchive(ctx, in, func(name string) { beats.beat(name) })
}

// buildArchive builds the archive, handing beat the name of each file it wrote.
func (a *Activities) buildArchive(ctx context.Context, in ArchiveInput, beat func(name string)) (ArchiveResult, error) {
	if err := a.stillWanted(ctx, in.RequestID); err != nil {
		return ArchiveResult{}, err
	}
	key := ArchiveKey(in.RequestID)
	// A retry after the archive was written and recorded (the process died while the
	// parts were being deleted) must not rebuild it from the parts that are left: it
	// finishes the deletion and answers what was recorded.
	var donePath, doneSum sql.NullString
	var doneSize sql.NullInt64
	if err := a.DB.QueryRowContext(ctx, `SELECT archive_path, archive_size, archive_sha256 FROM requests WHERE id = $1`, in.RequestID).Scan(&donePath, &doneSize, &doneSum); err != nil {
		return ArchiveResult{}, err
	}
	if donePath.String == key && doneSum.String != "" {
		total, err := a.archiveRecords(ctx, in.RequestID, key, doneSize.Int64)
		if err != nil {
			return ArchiveResult{}, err
		}
		if in.DeleteParts {
			if err := a.DeleteParts(ctx, RequestRef{RequestID: in.RequestID}); err != nil {
				return ArchiveResult{}, err
			}
		}
		if in.NotifyMember != "" {
			if err := a.NotifyExportReady(ctx, RequestRef{RequestID: in.RequestID, MemberID: in.NotifyMember}); err != nil {
				return ArchiveResult{}, err
			}
		}
		return ArchiveResult{Path: key, Size: doneSize.Int64, SHA256: doneSum.String, Records: total}, nil
	}
	w, err := a.Archives.NewWriter(ctx, in.RequestID, key)
	if err != nil {
		return ArchiveResult{}, err
	}
	sum, size := sha256.New(), &countingWriter{}
	zw := zip.NewWriter(io.MultiWriter(w, sum, size))
	// JSON compresses well even at flate's fastest level, which is several times faster
	// than the default: the archive is built at close to the speed its parts are read.
	zw.RegisterCompressor(zip.Deflate, pooledDeflate)
	man := Manifest{RequestID: in.RequestID, Created: a.Now().UTC()}
	var total int64
	fail := func(err error) (ArchiveResult, error) {
		_ = w.Close()
		_ = a.Archives.Bucket.Delete(context.WithoutCancel(ctx), key)
		return ArchiveResult{}, err
	}
	if in.Portability {
		f, err := a.writePortability(ctx, zw, in, beat)
		if err != nil {
			return fail(err)
		}
		man.Files, total = []ManifestFile{f}, f.Records
	}
	for _, svc := range in.Services {
		if in.Portability {
			break
		}
		files, err := a.datasets(ctx, partsPrefix(in.RequestID, svc))
		if err != nil {
			return fail(err)
		}
		for _, f := range files {
			name := svc + "/" + f.dataset + ".json"
			n, digest, err := a.writeDataset(ctx, zw, in.RequestID, name, f.keys)
			if err != nil {
				return fail(err)
			}
			man.Files = append(man.Files, ManifestFile{Path: name, Records: n, SHA256: digest, SchemaVersion: 1})
			total += n
			beat(name)
		}
	}
	if !in.Portability && a.Own != nil {
		files, n, err := a.writeOwn(ctx, zw, in.RequestID)
		if err != nil {
			return fail(err)
		}
		man.Files, total = append(man.Files, files...), total+n
	}
	mw, _ := zw.Create("manifest.json")
	enc := json.NewEncoder(mw)
	enc.SetIndent("", "  ")
	if err := enc.Encode(man); err != nil {
		return fail(err)
	}
	rw, _ := zw.Create("README.txt")
	if in.Portability {
		io.WriteString(rw, portabilityReadme)
	} else {
		io.WriteString(rw, archiveReadme)
		if err := a.writeReport(ctx, zw, in, man); err != nil {
			return fail(err)
		}
	}
	if err := zw.Close(); err != nil {
		return fail(err)
	}
	if err := w.Close(); err != nil {
		return fail(err)
	}
	digest := hex.EncodeToString(sum.Sum(nil))
	if _, err := a.DB.ExecContext(ctx, `UPDATE requests SET archive_path = $1, archive_size = $2, archive_sha256 = $3, archive_expires_at = $4 WHERE id = $5`,
		key, size.n, digest, in.ExpiresAt.UnixMicro(), in.RequestID); err != nil {
		return ArchiveResult{}, err
	}
	archiveSize.Record(ctx, size.n)
	if in.DeleteParts {
		if err := a.DeleteParts(ctx, RequestRef{RequestID: in.RequestID}); err != nil {
			return ArchiveResult{}, err
		}
	}
	if in.NotifyMember != "" {
		if err := a.NotifyExportReady(ctx, RequestRef{RequestID: in.RequestID, MemberID: in.NotifyMember}); err != nil {
			return ArchiveResult{}, err
		}
	}
	return ArchiveResult{Path: key, Size: size.n, SHA256: digest, Records: total}, nil
}

// archiveRecords counts the records an archive's manifest lists.
func (a *Activities) archiveRecords(ctx context.Context, requestID, key string, size int64) (int64, error) {
	r, err := a.Archives.NewReader(ctx, requestID, key)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	raw, err := io.ReadAll(io.LimitReader(r, size+1))
	if err != nil {
		return 0, err
	}
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		return 0, err
	}
	mf, err := zr.Open("manifest.json")
	if err != nil {
		return 0, err
	}
	defer mf.Close()
	var man Manifest
	if err := json.NewDecoder(mf).Decode(&man); err != nil {
		return 0, err
	}
	var total int64
	for _, f := range man.Files {
		total += f.Records
	}
	return total, nil
}

type datasetParts struct {
	dataset string
	keys    []string
}

// datasets groups a service's parts by dataset, in the order they were written.
func (a *Activities) datasets(ctx context.Context, prefix string) ([]datasetParts, error) {
	var keys []string
	it := a.Archives.Bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		keys = append(keys, obj.Key)
	}
	sort.Strings(keys) // zero-padded sequence numbers: write order
	var out []datasetParts
	index := map[string]int{}
	for _, k := range keys {
		parts := strings.SplitN(strings.TrimPrefix(k, prefix), ".", 3) // seq, dataset, "jsonl"
		if len(parts) != 3 {
			continue
		}
		i, ok := index[parts[1]]
		if !ok {
			i = len(out)
			index[parts[1]] = i
			out = append(out, datasetParts{dataset: parts[1]})
		}
		out[i].keys = append(out[i].keys, k)
	}
	return out, nil
}

// writeDataset writes a dataset's parts into the archive as one JSON array: packed parts
// are copied as they are, parts of exports written before packing (JSON lines) are
// rewritten and compressed.
func (a *Activities) writeDataset(ctx context.Context, zw *zip.Writer, requestID, name string, keys []string) (int64, string, error) {
	packed := 0
	for _, k := range keys {
		if isPacked(k) {
			packed++
		}
	}
	switch packed {
	case len(keys):
		return a.writePackedArray(ctx, zw, requestID, name, keys)
	case 0:
		return a.writeJSONArray(ctx, zw, requestID, name, keys)
	}
	return 0, "", temporal.NewNonRetryableApplicationError("a dataset's staging parts are of two formats", ErrPermanent, nil)
}

// writePackedArray copies a dataset's packed parts into a raw ZIP entry — their
// compressed blocks, then a final one with the closing "]\n" — after checking that they
// follow each other (no part missing, none twice), and takes the entry's CRC-32, sizes
// and SHA-256 from the last part's running state.
func (a *Activities) writePackedArray(ctx context.Context, zw *zip.Writer, requestID, name string, keys []string) (int64, string, error) {
	fh, out, err := newRawEntry(zw, name)
	if err != nil {
		return 0, "", err
	}
	cw := &countingTo{w: out}
	var last partTrailer
	for i, k := range keys {
		r, err := a.Archives.NewReader(ctx, requestID, k)
		if err != nil {
			return 0, "", err
		}
		t, err := readPacked(r, cw)
		r.Close()
		if err != nil {
			return 0, "", err
		}
		if t.First != (i == 0) || t.TotalRaw != last.TotalRaw+t.Raw || t.TotalRecords != last.TotalRecords+t.Records {
			return 0, "", fmt.Errorf("%w: part %d of %d does not follow the one before", errBadPart, i, len(keys))
		}
		last = t
	}
	sum, err := restoreState(last)
	if err != nil {
		return 0, "", err
	}
	tail := []byte("]\n")
	sum.sha.Write(tail)
	crc := crc32.Update(sum.crc, crc32.IEEETable, tail)
	fw := deflaters.Get().(*flate.Writer)
	fw.Reset(cw)
	_, err = fw.Write(tail)
	err = errors.Join(err, fw.Close())
	fw.Reset(io.Discard)
	deflaters.Put(fw)
	if err != nil {
		return 0, "", err
	}
	setSizes(fh, crc, cw.n, last.TotalRaw+int64(len(tail)))
	return last.TotalRecords, hex.EncodeToString(sum.sha.Sum(nil)), nil
}

// countingTo counts the bytes written through it.
type countingTo struct {
	w io.Writer
	n int64
}

func (c *countingTo) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeJSONArray writes a dataset's parts (JSON lines) into the archive as one JSON
// array, a record per line. The parts are read in large blocks and each block is
// written with its newlines turned into separators (a JSON record never holds a raw
// newline), so the compressor and the checksums see a few large writes per part instead
// of two per record.
func (a *Activities) writeJSONArray(ctx context.Context, zw *zip.Writer, requestID, name string, keys []string) (int64, string, error) {
	w, err := newParallelEntry(zw, name)
	if err != nil {
		return 0, "", err
	}
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	var n int64
	in := make([]byte, 256<<10)
	out := make([]byte, 0, len(in)+len(in)/32)
	out = append(out, '[')
	open := false // a record started and not yet ended by its newline
	for _, k := range keys {
		r, err := a.Archives.NewReader(ctx, requestID, k)
		if err != nil {
			return 0, "", err
		}
		for {
			m, rerr := io.ReadFull(r, in)
			for rest := in[:m]; len(rest) > 0; {
				if !open {
					if n > 0 {
						out = append(out, ",\n"...)
					}
					open = true
					n++
				}
				i := bytes.IndexByte(rest, '\n')
				if i < 0 {
					out, rest = append(out, rest...), nil
					break
				}
				out, rest, open = append(out, rest[:i]...), rest[i+1:], false
			}
			if _, err := mw.Write(out); err != nil {
				r.Close()
				return 0, "", err
			}
			out = out[:0]
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				break
			}
			if rerr != nil {
				r.Close()
				return 0, "", rerr
			}
		}
		r.Close()
		open = false // a part ends with its last record's newline; without it, the record ends here all the same
	}
	out = append(out, "]\n"...)
	if _, err := mw.Write(out); err != nil {
		return 0, "", err
	}
	if err := w.Close(); err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// DeleteArchive removes an expired (or failed) export: the archive, every staging part
// and the export's key, which also makes any copy left elsewhere unreadable.
func (a *Activities) DeleteArchive(ctx context.Context, in RequestRef) error {
	if _, err := a.DB.ExecContext(ctx, `UPDATE requests SET archive_path = '' WHERE id = $1`, in.RequestID); err != nil {
		return err
	}
	return a.Archives.DeleteExport(ctx, in.RequestID)
}

// DeleteParts removes an export's staging parts once its archive is written.
func (a *Activities) DeleteParts(ctx context.Context, in RequestRef) error {
	return a.Archives.DeletePrefix(ctx, in.RequestID+"/parts/")
}

// EraseArchives is the erasure's step for fulfillment's own copies of the member's data:
// it stops a running export (terminating its workflow and closing its request, so no
// worker writes another part), then deletes every archive and staging part of every
// export of the member and destroys their keys; download links die with the archives.
func (a *Activities) EraseArchives(ctx context.Context, in RequestRef) (ServiceErasure, error) {
	if err := a.refuseHeld(ctx, in.MemberID); err != nil {
		return ServiceErasure{}, err
	}
	if a.Complaints != nil { // the member's words in their complaints go with them
		if _, err := a.Complaints.EraseText(ctx, in.MemberID); err != nil {
			return ServiceErasure{}, err
		}
	}
	// Every other request of the member stops too (an export writing parts, a
	// rectification waiting for review…): nothing is left to do for an erased member.
	// A request's workflow is only ever started for a row filed first (intake), and rows
	// are never deleted once their workflow started, so only the kinds the member has
	// rows of can have one running: most erased members have none, and their erasure
	// asks Temporal nothing here (it was six terminations each, almost all NotFound).
	kinds, exports, err := a.memberRequests(ctx, in.MemberID)
	if err != nil {
		return ServiceErasure{}, err
	}
	for _, kind := range kinds {
		err := a.Temporal.TerminateWorkflow(ctx, WorkflowID(kind, in.MemberID), "", "the member is being erased")
		var nf *serviceerror.NotFound
		if err != nil && !errors.As(err, &nf) {
			return ServiceErasure{}, err
		}
	}
	if _, err := a.DB.ExecContext(ctx, `UPDATE requests SET state = $1, is_open = FALSE, completed_at = COALESCE(completed_at, $2) WHERE member_id = $3 AND kind NOT IN ($4, $5) AND is_open`,
		int32(stateCodes["cancelled"]), a.Now().UnixMicro(), in.MemberID, int32(fulfillmentv1.RequestKind_REQUEST_KIND_ERASURE), int32(fulfillmentv1.RequestKind_REQUEST_KIND_CHILD_ERASURE)); err != nil {
		return ServiceErasure{}, err
	}
	// Asserted corrections (rectification requests) are the member's data too.
	if _, err := a.DB.ExecContext(ctx, `DELETE FROM rectifications WHERE member_id = $1`, in.MemberID); err != nil {
		return ServiceErasure{}, err
	}
	var deleted int64
	for _, id := range exports {
		n, err := a.Archives.Count(ctx, id+"/")
		if err != nil {
			return ServiceErasure{}, err
		}
		if _, err := a.DB.ExecContext(ctx, `UPDATE requests SET archive_path = '' WHERE id = $1`, id); err != nil {
			return ServiceErasure{}, err
		}
		if err := a.Archives.DeleteExport(ctx, id); err != nil {
			return ServiceErasure{}, err
		}
		deleted += int64(n)
		activity.RecordHeartbeat(ctx, id)
	}
	return ServiceErasure{Service: "fulfillment", Results: []CategoryCount{{Dataset: "export_archives", Category: "user", Action: "ERASURE_ACTION_DELETE", Count: deleted}}}, nil
}

// stoppedByErasure are the kinds of request an erasure of the member stops.
var stoppedByErasure = map[fulfillmentv1.RequestKind]string{
	fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS:        KindAccess,
	fulfillmentv1.RequestKind_REQUEST_KIND_PORTABILITY:   KindPortability,
	fulfillmentv1.RequestKind_REQUEST_KIND_RECTIFICATION: KindRectification,
	fulfillmentv1.RequestKind_REQUEST_KIND_RESTRICTION:   KindRestriction,
	fulfillmentv1.RequestKind_REQUEST_KIND_OBJECTION:     KindObjection,
	fulfillmentv1.RequestKind_REQUEST_KIND_SALE_OPT_OUT:  KindSaleOptOut,
}

// memberRequests reads the member's request rows once: the kinds, among those an erasure
// stops, of which the member has rows (open or not: a run may outlive its row's
// closing), in a fixed order, and the ids of their exports (access and portability).
func (a *Activities) memberRequests(ctx context.Context, memberID string) (kinds, exports []string, err error) {
	rows, err := a.DB.QueryContext(ctx, `SELECT id, kind FROM requests WHERE member_id = $1 ORDER BY created_at, id`, memberID)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var code int32
		if err := rows.Scan(&id, &code); err != nil {
			return nil, nil, err
		}
		k := fulfillmentv1.RequestKind(code)
		if kind, ok := stoppedByErasure[k]; ok && !slices.Contains(kinds, kind) {
			kinds = append(kinds, kind)
		}
		if k == fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS || k == fulfillmentv1.RequestKind_REQUEST_KIND_PORTABILITY {
			exports = append(exports, id)
		}
	}
	sort.Strings(kinds)
	return kinds, exports, rows.Err()
}

// RevokeSessions ends every session of the member at once.
func (a *Activities) RevokeSessions(ctx context.Context, in RequestRef) error {
	_, err := a.Identity.RevokeAllSessions(ctx, &identityv1.RevokeAllSessionsRequest{Parent: in.member()})
	return permanent(err)
}

// StopMarketing unsubscribes the member from all marketing.
func (a *Activities) StopMarketing(ctx context.Context, in RequestRef) error {
	_, err := a.Preferences.StopAllMarketing(ctx, &preferencesv1.StopAllMarketingRequest{Name: in.member() + "/communicationPreferences",
		Source: preferencesv1.ConsentSource_CONSENT_SOURCE_PRIVACY_REQUEST, RequestId: "stop-" + in.RequestID})
	return permanent(err)
}

// BlockSharing stops all further sharing of the member's data.
func (a *Activities) BlockSharing(ctx context.Context, in RequestRef) error {
	_, err := a.Sharing.BlockSharing(ctx, &sharingv1.BlockSharingRequest{Member: in.member(), RequestId: in.RequestID})
	return permanent(err)
}

// EraseInput erases at one service.
type EraseInput struct {
	RequestRef
	Service string
}

// ServiceErasure is what one service reported.
type ServiceErasure struct {
	Service string
	Results []CategoryCount
}

// CategoryCount is one line of an erasure result.
type CategoryCount struct {
	Dataset, Category, Action, LegalBasis string
	Count                                 int64
}

// Total counts the records touched.
func (s ServiceErasure) Total() int64 {
	var n int64
	for _, r := range s.Results {
		n += r.Count
	}
	return n
}

// tombstoneCacheSize bounds the remembered tombstone ids; past it they are forgotten
// and read again.
const tombstoneCacheSize = 10_000

// tombstone returns the request's tombstone id. It never changes once the request is
// filed, so it is read once per request (per process) and remembered.
func (a *Activities) tombstone(ctx context.Context, requestID string) (string, error) {
	if t, ok := a.tombstones.Load(requestID); ok {
		return t.(string), nil
	}
	var t string
	if err := a.DB.QueryRowContext(ctx, `SELECT tombstone_id FROM requests WHERE id = $1`, requestID).Scan(&t); err != nil {
		return "", err
	}
	if t != "" {
		if a.tombstoneLen.Add(1) > tombstoneCacheSize {
			a.tombstones.Clear()
			a.tombstoneLen.Store(1)
		}
		a.tombstones.Store(requestID, t)
	}
	return t, nil
}

// heartbeatWhile heartbeats every few seconds until stop is called, for activities that
// wait on one long call: a worker that dies mid-call is noticed within the heartbeat
// timeout, and the attempt is retried elsewhere, instead of after start-to-close.
func heartbeatWhile(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}

// EraseService erases the member at one service (idempotent there by request id). It
// heartbeats while the service works.
func (a *Activities) EraseService(ctx context.Context, in EraseInput) (ServiceErasure, error) {
	defer heartbeatWhile(ctx)()
	t, err := a.tombstone(ctx, in.RequestID)
	if err != nil {
		return ServiceErasure{}, err
	}
	res, err := a.Subjects[in.Service].EraseSubjectData(ctx, &subjectv1.EraseSubjectDataRequest{Subject: in.member(), RequestId: in.RequestID, TombstoneId: t})
	if err != nil {
		return ServiceErasure{}, permanent(err)
	}
	out := ServiceErasure{Service: in.Service}
	for _, r := range res.GetResults() {
		out.Results = append(out.Results, CategoryCount{Dataset: r.GetDataset(), Category: r.GetCategory(), Action: r.GetAction().String(), LegalBasis: r.GetLegalBasis(), Count: r.GetCount()})
	}
	return out, nil
}

// Recipient is a processor to erase at, with its contractual acknowledgement deadline.
type Recipient struct {
	Partner     string
	AckDeadline time.Duration
}

// ErasureRecipients lists the processors that received the member's data.
func (a *Activities) ErasureRecipients(ctx context.Context, in RequestRef) ([]Recipient, error) {
	res, err := a.Sharing.ListErasureRecipients(ctx, &sharingv1.ListErasureRecipientsRequest{Member: in.member()})
	if err != nil {
		return nil, permanent(err)
	}
	out := make([]Recipient, 0, len(res.GetPartners()))
	for _, p := range res.GetPartners() {
		partner, err := a.Sharing.GetPartner(ctx, &sharingv1.GetPartnerRequest{Name: p})
		if err != nil {
			return nil, permanent(err)
		}
		out = append(out, Recipient{Partner: p, AckDeadline: partner.GetAckDeadline().AsDuration()})
	}
	return out, nil
}

// OnwardState is one processor's state.
type OnwardState struct {
	Acknowledged bool
	LastError    string
}

// SendOnward sends (or re-sends) the erasure to one processor, heartbeating while the
// processor answers.
func (a *Activities) SendOnward(ctx context.Context, in OnwardInput) (OnwardState, error) {
	defer heartbeatWhile(ctx)()
	o, err := a.Sharing.SendOnwardErasure(ctx, &sharingv1.SendOnwardErasureRequest{Member: "members/" + in.MemberID, Partner: in.Partner, RequestId: in.RequestID})
	if err != nil {
		return OnwardState{}, permanent(err)
	}
	return OnwardState{Acknowledged: o.GetState() == sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_ACKNOWLEDGED, LastError: o.GetLastError()}, nil
}

// QueueConfirmation queues the final confirmation message before identity is erased
// (after that, nobody could be told); identity delivers it before it shreds the member.
func (a *Activities) QueueConfirmation(ctx context.Context, in RequestRef) error {
	// No "being erased" message while the member's data is on legal hold.
	if err := a.refuseHeld(ctx, in.MemberID); err != nil {
		return err
	}
	if _, err := a.Identity.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: in.member(), Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_ERASURE_CONFIRMED,
		Reference: in.member() + "/privacyRequests/" + in.RequestID, RequestId: "confirm-" + in.RequestID}); err != nil {
		return permanent(err)
	}
	return Notify(ctx, a.DB, in.RequestID, "erasure_confirmation", "", a.Now())
}

// NotifyExportReady tells the member their archive can be downloaded.
func (a *Activities) NotifyExportReady(ctx context.Context, in RequestRef) error {
	if _, err := a.Identity.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: in.member(), Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_EXPORT_READY,
		Reference: in.member() + "/privacyRequests/" + in.RequestID, RequestId: "ready-" + in.RequestID}); err != nil {
		return permanent(err)
	}
	return Notify(ctx, a.DB, in.RequestID, "export_ready", "", a.Now())
}

// VerifyErased asks every service what it still holds, and looks at fulfillment's own
// archives, keys and links; anything without a legal basis fails the step loudly.
func (a *Activities) VerifyErased(ctx context.Context, in RequestRef) error {
	leftovers, err := Sweep(ctx, a, in)
	if err != nil {
		return err
	}
	if len(leftovers) > 0 {
		activity.GetLogger(ctx).Error("erasure verification failed", "request", in.RequestID, "leftovers", leftovers)
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("data still held after erasure: %v", leftovers), "ERASURE_INCOMPLETE", nil)
	}
	return nil
}

// Sweep is the verification sweep: every place that still holds the member's data
// without a legal basis, as "service.dataset=count".
func Sweep(ctx context.Context, a *Activities, in RequestRef) ([]string, error) {
	t, err := a.tombstone(ctx, in.RequestID)
	if err != nil {
		return nil, err
	}
	var leftovers []string
	for _, svc := range ExportServices {
		rep, err := a.Subjects[svc].ReportSubjectData(ctx, &subjectv1.ReportSubjectDataRequest{Subject: in.member(), TombstoneId: t})
		if err != nil {
			return nil, err
		}
		for _, h := range rep.GetHeld() {
			if h.GetLegalBasis() == "" {
				leftovers = append(leftovers, fmt.Sprintf("%s.%s=%d", svc, h.GetDataset(), h.GetCount()))
			}
		}
	}
	own, err := a.heldHere(ctx, in.MemberID)
	if err != nil {
		return nil, err
	}
	return append(leftovers, own...), nil
}

// LegalBasisRequests justifies keeping the request records of an erased member: the
// accountability record of how their requests were handled (GDPR Art. 5(2)). They hold
// the opaque member id, states and times — no personal values.
const LegalBasisRequests = "accountability record of privacy requests (GDPR Art. 5(2)); opaque ids, states and times only"

// heldHere is the verification sweep over fulfillment's own copies: any archive object or
// archive key of any export of the member is a leftover (none has a legal basis).
// The request records themselves are kept under LegalBasisRequests.
func (a *Activities) heldHere(ctx context.Context, memberID string) ([]string, error) {
	rows, err := a.DB.QueryContext(ctx, `SELECT id FROM requests WHERE member_id = $1 AND kind IN ($2, $3)`, memberID, int32(fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS),
		int32(fulfillmentv1.RequestKind_REQUEST_KIND_PORTABILITY))
	if err != nil {
		return nil, err
	}
	var exports []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		exports = append(exports, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var objects, keys, links int
	for _, id := range exports {
		n, err := a.Archives.Count(ctx, id+"/")
		if err != nil {
			return nil, err
		}
		objects += n
		has, err := a.Archives.Keys.Has(ctx, ArchiveSubject(id))
		if err != nil {
			return nil, err
		}
		if has {
			keys++
		}
		var path string
		if err := a.DB.QueryRowContext(ctx, `SELECT archive_path FROM requests WHERE id = $1`, id).Scan(&path); err != nil {
			return nil, err
		}
		if path != "" {
			links++
		}
	}
	var rectifications int
	if err := a.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM rectifications WHERE member_id = $1`, memberID).Scan(&rectifications); err != nil {
		return nil, err
	}
	var out []string
	for _, l := range []struct {
		name string
		n    int
	}{{"export_archives", objects}, {"archive_keys", keys}, {"download_links", links}, {"rectifications", rectifications}} {
		if l.n > 0 {
			out = append(out, fmt.Sprintf("fulfillment.%s=%d", l.name, l.n))
		}
	}
	return out, nil
}

// ReceiptInput signs a receipt.
type ReceiptInput struct {
	RequestRef
	Services []ServiceErasure
	Onward   []OnwardResult
}

// Receipt is the signed statement of an erasure: opaque ids, systems, actions, counts,
// processor acknowledgements and times — no personal data.
type Receipt struct {
	RequestID   string           `json:"request_id"`
	TombstoneID string           `json:"tombstone_id"`
	Completed   time.Time        `json:"completed"`
	Systems     []ServiceErasure `json:"systems"`
	Processors  []OnwardResult   `json:"processors"`
	KeyID       string           `json:"key_id"`
}

// SignReceipt signs the receipt with Ed25519. The member fetches it with the receipt
// token they were given when they filed the request (only its hash is stored).
func (a *Activities) SignReceipt(ctx context.Context, in ReceiptInput) error {
	t, err := a.tombstone(ctx, in.RequestID)
	if err != nil {
		return err
	}
	payload, _ := json.Marshal(Receipt{RequestID: in.RequestID, TombstoneID: t, Completed: a.Now().UTC(), Systems: in.Services, Processors: in.Onward, KeyID: a.KeyID})
	sig, err := a.Signer.Sign(payload)
	if err != nil {
		return err
	}
	// Signed once: a retried activity keeps the first receipt.
	_, err = a.DB.ExecContext(ctx, `UPDATE requests SET receipt_payload = $1, receipt_signature = $2 WHERE id = $3 AND receipt_payload IS NULL`, payload, sig, in.RequestID)
	return err
}
