package request

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
)

// OwnData gives fulfillment's own records of a member for their access archive (the
// API layer implements it: the records are what the API shows the member).
type OwnData interface {
	ExportOwn(ctx context.Context, memberID string) ([]OwnDataset, error)
}

// OwnDataset is one kind of fulfillment's records of a member: protojson records of its
// API messages, written as fulfillment/{Name}.json.
type OwnDataset struct {
	Name, Category string
	Records        [][]byte
}

// writeOwn adds fulfillment's own datasets to an access archive. They are read when the
// archive is built, so they include the export request itself.
func (a *Activities) writeOwn(ctx context.Context, zw *zip.Writer, requestID string) ([]ManifestFile, int64, error) {
	var member string
	if err := a.DB.QueryRowContext(ctx, `SELECT member_id FROM requests WHERE id = $1`, requestID).Scan(&member); err != nil {
		return nil, 0, err
	}
	sets, err := a.Own.ExportOwn(ctx, member)
	if err != nil {
		return nil, 0, err
	}
	var files []ManifestFile
	var total int64
	for _, d := range sets {
		name := "fulfillment/" + d.Name + ".json"
		w, err := zw.Create(name)
		if err != nil {
			return nil, 0, err
		}
		h := sha256.New()
		mw := io.MultiWriter(w, h)
		io.WriteString(mw, "[")
		for i, rec := range d.Records {
			if i > 0 {
				io.WriteString(mw, ",\n")
			}
			mw.Write(rec)
		}
		io.WriteString(mw, "]\n")
		files = append(files, ManifestFile{Path: name, Records: int64(len(d.Records)), SHA256: hex.EncodeToString(h.Sum(nil)), SchemaVersion: 1})
		total += int64(len(d.Records))
	}
	return files, total, nil
}
