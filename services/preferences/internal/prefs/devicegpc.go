package prefs

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"regexp"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	"lethe.dev/platform/errs"
)

// DeviceGPCRetention is how long a signed-out visitor's signal is remembered for their
// device without a sign-in; a browser that keeps sending it renews it.
const DeviceGPCRetention = 400 * 24 * time.Hour

var deviceIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)

// deviceHash is what the table keeps of a device id: the cookie value itself never.
func deviceHash(deviceID string) []byte {
	h := sha256.Sum256([]byte("lethe-device-gpc\x00" + deviceID))
	return h[:]
}

// RecordDeviceGlobalPrivacyControl implements PreferencesService: a signed-out visitor's
// Sec-GPC: 1 is kept against their device until someone signs in on it.
func (s *Server) RecordDeviceGlobalPrivacyControl(ctx context.Context, req *preferencesv1.RecordDeviceGlobalPrivacyControlRequest) (*preferencesv1.RecordDeviceGlobalPrivacyControlResponse, error) {
	if !deviceIDPattern.MatchString(req.GetDeviceId()) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "device_id", Description: "must be 16 to 128 of A-Z a-z 0-9 _ -"})
	}
	now := s.now()
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO device_gpc (device_hash, signal_at) VALUES ($1, $2)
		ON CONFLICT (device_hash) DO UPDATE SET signal_at = excluded.signal_at`, deviceHash(req.GetDeviceId()), micros(now)); err != nil {
		return nil, err
	}
	// Signals nobody signed in with are forgotten after DeviceGPCRetention.
	if _, err := s.DB.ExecContext(ctx, `DELETE FROM device_gpc WHERE signal_at < $1`, micros(now.Add(-DeviceGPCRetention))); err != nil {
		return nil, err
	}
	return &preferencesv1.RecordDeviceGlobalPrivacyControlResponse{SignalTime: timestamppb.New(now)}, nil
}

// ApplyDeviceGlobalPrivacyControl implements PreferencesService: at sign-in, a signal
// recorded against the device (or sent with the sign-in) opts the member out of sale,
// sharing and ad personalization, with a GLOBAL_PRIVACY_CONTROL consent record.
func (s *Server) ApplyDeviceGlobalPrivacyControl(ctx context.Context, req *preferencesv1.ApplyDeviceGlobalPrivacyControlRequest) (*preferencesv1.ApplyDeviceGlobalPrivacyControlResponse, error) {
	id, err := member(req.GetName(), adSuffix, "name")
	if err != nil {
		return nil, err
	}
	if req.GetDeviceId() != "" && !deviceIDPattern.MatchString(req.GetDeviceId()) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "device_id", Description: "must be 16 to 128 of A-Z a-z 0-9 _ -"})
	}
	if err := s.refuseErased(ctx, s.DB, id); err != nil {
		return nil, err
	}
	out := &preferencesv1.ApplyDeviceGlobalPrivacyControlResponse{}
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		signal := req.GetSignal()
		if !signal && req.GetDeviceId() != "" {
			var at int64
			err := tx.QueryRowContext(ctx, `SELECT signal_at FROM device_gpc WHERE device_hash = $1`, deviceHash(req.GetDeviceId())).Scan(&at)
			switch {
			case err == nil:
				signal = at >= micros(s.now().Add(-DeviceGPCRetention))
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		var err error
		if !signal {
			out.AdPreferences, err = s.loadAds(ctx, tx, id)
			return err
		}
		out.Applied = true
		out.AdPreferences, err = s.applyGPC(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
