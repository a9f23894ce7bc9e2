package temporaldev

import (
	"strings"
	"testing"
)

func TestPostgresConfigsPoolMaxConns(t *testing.T) {
	main, vis, err := postgresConfigs("postgres://u:pw@db:5432/tmp?sslmode=disable&pool_max_conns=6")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  int
	}{{"main MaxConns", main.MaxConns}, {"main MaxIdleConns", main.MaxIdleConns}, {"visibility MaxConns", vis.MaxConns}, {"visibility MaxIdleConns", vis.MaxIdleConns}} {
		if c.got != 6 {
			t.Errorf("%s = %d, want 6", c.name, c.got)
		}
	}
	// Not a connect attribute: PostgreSQL would refuse it as an unknown parameter.
	if _, ok := main.ConnectAttributes["pool_max_conns"]; ok || main.ConnectAttributes["sslmode"] != "disable" || len(main.ConnectAttributes) != 1 {
		t.Errorf("connect attributes = %v, want sslmode only", main.ConnectAttributes)
	}
	if main.DatabaseName != "tmp" || vis.DatabaseName != "tmp_visibility" || main.ConnectAddr != "db:5432" || main.Password != "pw" {
		t.Errorf("main %+v, visibility %s", main, vis.DatabaseName)
	}

	main, _, err = postgresConfigs("postgres://u@db/tmp?sslmode=disable")
	if err != nil || main.MaxConns != DefaultPoolMaxConns || main.MaxIdleConns != DefaultPoolMaxConns {
		t.Errorf("default pool: %+v, %v; want %d", main, err, DefaultPoolMaxConns)
	}
	for _, bad := range []string{"0", "x", "-1"} {
		if _, _, err := postgresConfigs("postgres://u:secret@db/tmp?pool_max_conns=" + bad); err == nil || !strings.Contains(err.Error(), "pool_max_conns") || strings.Contains(err.Error(), "secret") {
			t.Errorf("pool_max_conns=%s: err = %v; want an error naming the parameter, without the URL", bad, err)
		}
	}
}
