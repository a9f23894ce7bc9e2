package request

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"gocloud.dev/blob/memblob"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/shred"
	"lethe.dev/platform/storage/storagetest"
	"lethe.dev/services/fulfillment/internal/store"
)

// fakeSubject streams fixed chunks; the cursor of a chunk is the index of the next one.
// failAt, when positive, fails the stream (as a crashed worker or service would) when it
// reaches that chunk.
type fakeSubject struct {
	subjectv1.DataSubjectServiceClient
	chunks  []*subjectv1.ExportSubjectDataResponse
	failAt  int
	streams int // streams opened
}

type fakeStream struct {
	grpc.ClientStream
	s    *fakeSubject
	next int
}

func (f *fakeSubject) ExportSubjectData(_ context.Context, in *subjectv1.ExportSubjectDataRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[subjectv1.ExportSubjectDataResponse], error) {
	f.streams++
	next := 0
	if in.GetCursor() != "" {
		var err error
		if next, err = strconv.Atoi(in.GetCursor()); err != nil {
			return nil, err
		}
	}
	return &fakeStream{s: f, next: next}, nil
}

func (s *fakeStream) Recv() (*subjectv1.ExportSubjectDataResponse, error) {
	if s.s.failAt > 0 && s.next == s.s.failAt {
		return nil, status.Error(codes.Unavailable, "the service went away")
	}
	if s.next == len(s.s.chunks) {
		return nil, io.EOF
	}
	c := s.s.chunks[s.next]
	s.next++
	return c, nil
}

// testChunks is a member's data: a one-record dataset, a long one over several parts
// (records of varying sizes, some JSON arrays, which start with the "[" that also opens
// a dataset's first part), an empty one, and a short one.
func testChunks() ([]*subjectv1.ExportSubjectDataResponse, map[string][][]byte) {
	var chunks []*subjectv1.ExportSubjectDataResponse
	want := map[string][][]byte{}
	add := func(dataset string, recs [][]byte) {
		chunks = append(chunks, &subjectv1.ExportSubjectDataResponse{Dataset: dataset, Records: recs, Cursor: strconv.Itoa(len(chunks) + 1)})
		want[dataset] = append(want[dataset], recs...)
	}
	add("profile", [][]byte{[]byte(`{"name":"Test Member","email":"member@example.com"}`)})
	for c := range 100 {
		recs := make([][]byte, 0, 500)
		for i := range 500 {
			n := c*500 + i
			if n%1000 == 0 {
				recs = append(recs, fmt.Appendf(nil, `[%d,"array record"]`, n))
				continue
			}
			recs = append(recs, fmt.Appendf(nil, `{"id":"ev-%07d","titleId":"title-%d","note":%q}`, n, n%500, strings.Repeat("x", n%97)))
		}
		add("viewing_history", recs)
	}
	add("empty", nil)
	add("ratings", [][]byte{[]byte(`{"title":"a","stars":5}`), []byte(`{"title":"b","stars":1}`)})
	return chunks, want
}

// jsonArray is a dataset's archive file as the archive has always written it.
func jsonArray(recs [][]byte) []byte {
	return append(append([]byte("["), bytes.Join(recs, []byte(",\n"))...), "]\n"...)
}

func testActivities(t *testing.T) *Activities {
	t.Helper()
	db := storagetest.MustOpenSQLite(t, store.Migrations)
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	kek, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := shred.Open(context.Background(), db, kek)
	if err != nil {
		t.Fatal(err)
	}
	bucket := memblob.OpenBucket(nil)
	t.Cleanup(func() { bucket.Close() })
	return &Activities{DB: db, Archives: &Archives{Bucket: bucket, Keys: keys}, Now: time.Now}
}

func addRequest(t *testing.T, a *Activities, id string) {
	t.Helper()
	if _, err := a.DB.Exec(`INSERT INTO requests (id, member_id, kind, jurisdiction, origin, state, is_open, created_at, due_at, extended, extension_reason, hold_reason, progress,
		challenge_id, tombstone_id, archive_path, archive_size, archive_sha256, breached) VALUES ($1, $1, 1, 1, 1, 1, TRUE, 0, 0, FALSE, '', '', '[]', '', '', '', 0, '', FALSE)`, id); err != nil {
		t.Fatal(err)
	}
}

// runExport runs ExportService as Temporal would run one attempt, from the heartbeat
// details given (nil: a first attempt), and returns its result and its last heartbeat.
func runExport(t *testing.T, a *Activities, requestID string, from *exportProgress) (ExportResult, *exportProgress, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	if from != nil {
		env.SetHeartbeatDetails(*from)
	}
	var last *exportProgress
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var p exportProgress
		if err := details.Get(&p); err != nil {
			t.Errorf("heartbeat: %v", err)
		}
		last = &p
	})
	val, err := env.ExecuteActivity(a.ExportService, ExportInput{RequestID: requestID, MemberID: "m1", Service: "preferences"})
	if err != nil {
		return ExportResult{}, last, err
	}
	var res ExportResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	return res, last, nil
}

// archiveFiles builds the request's archive and returns its files' contents, checked by
// archive/zip (CRC-32 and sizes), and its manifest.
func archiveFiles(t *testing.T, a *Activities, requestID string, portability bool) (map[string][]byte, Manifest) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	if _, err := env.ExecuteActivity(a.BuildArchive, ArchiveInput{RequestID: requestID, Services: []string{"preferences"}, Portability: portability}); err != nil {
		t.Fatalf("BuildArchive: %v", err)
	}
	r, err := a.Archives.NewReader(context.Background(), requestID, ArchiveKey(requestID))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc) // fails on a CRC-32 or size mismatch
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		files[f.Name] = b
	}
	var man Manifest
	if err := json.Unmarshal(files["manifest.json"], &man); err != nil {
		t.Fatal(err)
	}
	for _, mf := range man.Files {
		sum := sha256.Sum256(files[mf.Path])
		if hex.EncodeToString(sum[:]) != mf.SHA256 {
			t.Errorf("%s %s: manifest SHA-256 does not match the file", requestID, mf.Path)
		}
	}
	return files, man
}

// TestPackedPartsAcrossACrashBuildTheSameArchive exports a member's data once in one go
// and once in an attempt that dies mid-dataset followed by one resumed from its last
// heartbeat, and requires both archives to hold exactly the JSON arrays the records
// make, with the manifest's counts and SHA-256 checksums and the ZIP's CRC-32s right.
func TestPackedPartsAcrossACrashBuildTheSameArchive(t *testing.T) {
	quiet := heartbeatQuiet
	heartbeatQuiet = 0 // every closed part heartbeats
	t.Cleanup(func() { heartbeatQuiet = quiet })
	chunks, want := testChunks()
	a := testActivities(t)
	subject := &fakeSubject{chunks: chunks}
	a.Subjects = map[string]subjectv1.DataSubjectServiceClient{"preferences": subject}

	addRequest(t, a, "whole")
	res, _, err := runExport(t, a, "whole", nil)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, recs := range want {
		total += int64(len(recs))
	}
	if res.Records != total {
		t.Fatalf("exported %d records, want %d", res.Records, total)
	}

	addRequest(t, a, "resumed")
	subject.failAt = 71 // 35,000 viewing-history records in: the second part is open
	_, hb, err := runExport(t, a, "resumed", nil)
	if err == nil || hb == nil || hb.NextSeq != 2 || !hb.Packed {
		t.Fatalf("crashed attempt: err %v, last heartbeat %+v: want a failure after two closed parts", err, hb)
	}
	raw, _ := json.Marshal(hb)
	if bytes.Contains(raw, []byte("ev-")) || bytes.Contains(raw, []byte("example.com")) {
		t.Fatalf("the heartbeat carries the member's data: %s", raw)
	}
	subject.failAt = 0
	res, _, err = runExport(t, a, "resumed", hb)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != total {
		t.Fatalf("resumed export counted %d records, want %d", res.Records, total)
	}

	whole, wholeMan := archiveFiles(t, a, "whole", false)
	resumed, resumedMan := archiveFiles(t, a, "resumed", false)
	for _, got := range []struct {
		files map[string][]byte
		man   Manifest
	}{{whole, wholeMan}, {resumed, resumedMan}} {
		counts := map[string]int64{}
		for _, f := range got.man.Files {
			counts[f.Path] = f.Records
		}
		for dataset, recs := range want {
			name := "preferences/" + dataset + ".json"
			if !bytes.Equal(got.files[name], jsonArray(recs)) {
				t.Errorf("%s: %d bytes, want the %d-byte JSON array of its records", name, len(got.files[name]), len(jsonArray(recs)))
			}
			if counts[name] != int64(len(recs)) {
				t.Errorf("%s: manifest counts %d records, want %d", name, counts[name], len(recs))
			}
			var parsed []json.RawMessage
			if err := json.Unmarshal(got.files[name], &parsed); err != nil || len(parsed) != len(recs) {
				t.Errorf("%s: %d records parsed (%v), want %d", name, len(parsed), err, len(recs))
			}
		}
	}
	for i := range wholeMan.Files {
		if wholeMan.Files[i] != resumedMan.Files[i] {
			t.Errorf("manifest entry %d: %+v in one go, %+v across the crash", i, wholeMan.Files[i], resumedMan.Files[i])
		}
	}

	// The portability form reads the same packed parts record by record.
	addRequest(t, a, "portable")
	subject.failAt = 0
	if _, _, err := runExport(t, a, "portable", nil); err != nil {
		t.Fatal(err)
	}
	files, man := archiveFiles(t, a, "portable", true)
	var doc struct {
		Datasets []struct {
			Dataset string
			Records []json.RawMessage
		}
	}
	if err := json.Unmarshal(files[PortabilityFile], &doc); err != nil {
		t.Fatal(err)
	}
	for _, d := range doc.Datasets {
		recs := want[d.Dataset]
		if len(d.Records) != len(recs) {
			t.Errorf("portability %s: %d records, want %d", d.Dataset, len(d.Records), len(recs))
			continue
		}
		for i := range recs {
			if !bytes.Equal(d.Records[i], recs[i]) {
				t.Errorf("portability %s record %d: %s, want %s", d.Dataset, i, d.Records[i], recs[i])
				break
			}
		}
	}
	if len(doc.Datasets) != len(want) || man.Files[0].Records != total {
		t.Errorf("portability: %d datasets, %d records; want %d, %d", len(doc.Datasets), man.Files[0].Records, len(want), total)
	}
}

// TestJSONLinesPartsStillBuild: parts an earlier release wrote (JSON lines) still build
// into the archive, and an attempt resuming from such an export's heartbeat starts over
// in packed parts.
func TestJSONLinesPartsStillBuild(t *testing.T) {
	chunks, want := testChunks()
	a := testActivities(t)
	a.Subjects = map[string]subjectv1.DataSubjectServiceClient{"preferences": &fakeSubject{chunks: chunks}}
	ctx := context.Background()

	addRequest(t, a, "old")
	for i, dataset := range []string{"profile", "viewing_history", "empty", "ratings"} {
		w, err := a.Archives.NewWriter(ctx, "old", fmt.Sprintf("%s%06d.%s.jsonl", partsPrefix("old", "preferences"), i, dataset))
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range want[dataset] {
			w.Write(append(rec, '\n'))
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := archiveFiles(t, a, "old", false)
	for dataset, recs := range want {
		if name := "preferences/" + dataset + ".json"; !bytes.Equal(files[name], jsonArray(recs)) {
			t.Errorf("%s from JSON-lines parts: %d bytes, want %d", name, len(files[name]), len(jsonArray(recs)))
		}
	}

	// An attempt of the earlier release heartbeated after two JSON-lines parts.
	addRequest(t, a, "upgraded")
	for i, dataset := range []string{"profile", "viewing_history"} {
		if err := a.Archives.Bucket.WriteAll(ctx, fmt.Sprintf("%s%06d.%s.jsonl", partsPrefix("upgraded", "preferences"), i, dataset), []byte("old part"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := runExport(t, a, "upgraded", &exportProgress{Cursor: "41", NextSeq: 2, Records: 20_001}); err != nil {
		t.Fatal(err)
	}
	files, _ = archiveFiles(t, a, "upgraded", false)
	for dataset, recs := range want {
		if name := "preferences/" + dataset + ".json"; !bytes.Equal(files[name], jsonArray(recs)) {
			t.Errorf("%s after an upgrade mid-export: %d bytes, want %d", name, len(files[name]), len(jsonArray(recs)))
		}
	}
}

// TestDamagedPackedPartIsRefused: a part cut short or a part missing from a dataset fails
// the archive step instead of building a wrong file.
func TestDamagedPackedPartIsRefused(t *testing.T) {
	chunks, _ := testChunks()
	a := testActivities(t)
	a.Subjects = map[string]subjectv1.DataSubjectServiceClient{"preferences": &fakeSubject{chunks: chunks}}
	addRequest(t, a, "gap")
	if _, _, err := runExport(t, a, "gap", nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Archives.Bucket.Delete(ctx, partsPrefix("gap", "preferences")+"000002.viewing_history"+packedSuffix); err != nil {
		t.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	if _, err := env.ExecuteActivity(a.BuildArchive, ArchiveInput{RequestID: "gap", Services: []string{"preferences"}}); err == nil || !strings.Contains(err.Error(), errBadPart.Error()) {
		t.Fatalf("archive of a dataset with a part missing: %v, want %v", err, errBadPart)
	}
	if _, err := readPacked(bytes.NewReader([]byte(packedMagic+"\x01short")), io.Discard); !errors.Is(err, errBadPart) {
		t.Fatalf("a part cut short: %v, want %v", err, errBadPart)
	}
}

// TestExportAllResumesEachServiceAndSkipsFinishedOnes: ExportAll's retry after one
// service failed mid-stream resumes that service from its heartbeated progress, does not
// stream a finished service again, and builds the same archive as ever.
func TestExportAllResumesEachServiceAndSkipsFinishedOnes(t *testing.T) {
	quiet := heartbeatQuiet
	heartbeatQuiet = 0
	t.Cleanup(func() { heartbeatQuiet = quiet })
	chunks, want := testChunks()
	disclosures := [][]byte{[]byte(`{"partner":"partners/acme","purpose":"ads","discloseTime":"2026-01-01T00:00:00Z","dataCategories":["user.device"]}`)}
	prefs := &fakeSubject{chunks: chunks, failAt: 71}
	sharing := &fakeSubject{chunks: []*subjectv1.ExportSubjectDataResponse{{Dataset: "disclosures", Records: disclosures, Cursor: "1"}}}
	a := testActivities(t)
	a.Subjects = map[string]subjectv1.DataSubjectServiceClient{"preferences": prefs, "sharing": sharing}
	addRequest(t, a, "all")
	services := []string{"preferences", "sharing"}
	in := ExportAllInput{RequestID: "all", MemberID: "all", Services: services,
		Archive: &ArchiveInput{RequestID: "all", Services: services, DeleteParts: true}, ArchiveTTL: 24 * time.Hour}

	run := func(from *exportAllProgress) (ExportAllResult, *exportAllProgress, error) {
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestActivityEnvironment()
		env.RegisterActivity(a)
		if from != nil {
			env.SetHeartbeatDetails(*from)
		}
		var last *exportAllProgress
		env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
			var p exportAllProgress
			if err := details.Get(&p); err != nil {
				t.Errorf("heartbeat: %v", err)
			}
			last = &p
		})
		val, err := env.ExecuteActivity(a.ExportAll, in)
		if err != nil {
			return ExportAllResult{}, last, err
		}
		var res ExportAllResult
		if err := val.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res, last, nil
	}
	_, hb, err := run(nil)
	if err == nil || hb == nil || !hb.Services["sharing"].Done || hb.Services["preferences"].Done || hb.Services["preferences"].NextSeq != 2 {
		t.Fatalf("first attempt: err %v, last heartbeat %+v: want preferences failed after two parts, sharing done", err, hb)
	}
	prefs.failAt = 0
	res, _, err := run(hb)
	if err != nil {
		t.Fatal(err)
	}
	if sharing.streams != 1 {
		t.Errorf("sharing was streamed %d times, want once (it had finished)", sharing.streams)
	}
	var total int64
	for _, recs := range want {
		total += int64(len(recs))
	}
	if len(res.Exports) != 2 || res.Exports[0].Records != total || res.Exports[1].Records != 1 || res.Archive.Records != total+1 {
		t.Fatalf("result %+v, want %d preferences records and 1 disclosure", res, total)
	}
	got, err := a.ArchiveExpiresAt(context.Background(), RequestRef{RequestID: "all"})
	if err != nil || got.Pending || time.Until(got.At) < 23*time.Hour || time.Until(got.At) > 25*time.Hour {
		t.Errorf("recorded expiry %v (pending %v, %v), want a day from now", got.At, got.Pending, err)
	}
	files, _ := archiveFiles(t, a, "all", false)
	for dataset, recs := range want {
		if name := "preferences/" + dataset + ".json"; !bytes.Equal(files[name], jsonArray(recs)) {
			t.Errorf("%s: %d bytes, want %d", name, len(files[name]), len(jsonArray(recs)))
		}
	}
	if !bytes.Equal(files["sharing/disclosures.json"], jsonArray(disclosures)) {
		t.Errorf("sharing/disclosures.json: %q", files["sharing/disclosures.json"])
	}
	if !bytes.Contains(files["report.html"], []byte("partners/acme")) {
		t.Error("report.html does not name the recipient read from the packed disclosures part")
	}
	if n, err := a.Archives.Count(context.Background(), "all/parts/"); err != nil || n != 0 {
		t.Errorf("%d staging parts left after the archive (%v)", n, err)
	}
}
