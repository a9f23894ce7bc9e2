package request

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
)

// PortabilitySchema names the schema of portability.json (docs/portability.md,
// docs/portability.schema.json). A change that breaks readers gets a new version.
const PortabilitySchema = "https://lethe.dev/schemas/portability/v1"

// PortabilityFile is the name of the portability document in the archive.
const PortabilityFile = "portability.json"

const portabilityReadme = `Your data, in a machine-readable form you can take to another service.

portability.json is one JSON document in the schema named in its "$schema" field
(https://lethe.dev/schemas/portability/v1): for each of our systems, each kind of
data you provided or that your use of the service generated, as an array of records.
manifest.json gives its record count and SHA-256 checksum.
This archive contains personal data: store it safely.
`

// writePortability streams every exported dataset into portability.json:
//
//	{"$schema": …, "request_id": …, "subject": "members/…", "created": …,
//	 "datasets": [{"system": "identity", "dataset": "profile", "records": [ … ]}, …]}
//
// Records are written as the services exported them (one JSON object each), so memory
// stays flat whatever the size.
func (a *Activities) writePortability(ctx context.Context, zw *zip.Writer, in ArchiveInput, beat func(name string)) (ManifestFile, error) {
	var member string
	if err := a.DB.QueryRowContext(ctx, `SELECT member_id FROM requests WHERE id = $1`, in.RequestID).Scan(&member); err != nil {
		return ManifestFile{}, err
	}
	w, err := zw.Create(PortabilityFile)
	if err != nil {
		return ManifestFile{}, err
	}
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	head, _ := json.Marshal(map[string]any{"$schema": PortabilitySchema, "request_id": in.RequestID, "subject": "members/" + member, "created": a.Now().UTC()})
	mw.Write(head[:len(head)-1]) // leave the object open for the datasets
	io.WriteString(mw, `,"datasets":[`)
	var total int64
	first := true
	for _, svc := range in.Services {
		files, err := a.datasets(ctx, partsPrefix(in.RequestID, svc))
		if err != nil {
			return ManifestFile{}, err
		}
		for _, f := range files {
			if !first {
				io.WriteString(mw, ",\n")
			}
			first = false
			label, _ := json.Marshal(map[string]string{"system": svc, "dataset": f.dataset})
			mw.Write(label[:len(label)-1])
			io.WriteString(mw, `,"records":[`)
			var n int64
			for _, k := range f.keys {
				if err := a.eachRecord(ctx, in.RequestID, k, func(rec []byte) error {
					if n > 0 {
						io.WriteString(mw, ",\n")
					}
					mw.Write(rec)
					n++
					return nil
				}); err != nil {
					return ManifestFile{}, err
				}
			}
			io.WriteString(mw, "]}")
			total += n
			beat(svc + "/" + f.dataset)
		}
	}
	io.WriteString(mw, "]}\n")
	return ManifestFile{Path: PortabilityFile, Records: total, SHA256: hex.EncodeToString(h.Sum(nil)), SchemaVersion: 1}, nil
}
