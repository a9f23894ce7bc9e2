package temporaldev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/common/config"
	tlog "go.temporal.io/server/common/log"
	pgplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	schematool "go.temporal.io/server/tools/common/schema"
	sqltool "go.temporal.io/server/tools/sql"
	"google.golang.org/protobuf/types/known/durationpb"
	"lethe.dev/platform/storage"
)

// The server module's embedded schemas (go.temporal.io/server/schema), applied with its
// own schema tools exactly as temporal-sql-tool setup-schema / update-schema would.
const (
	pgSchema           = "postgresql/v12/temporal"
	pgVisibilitySchema = "postgresql/v12/visibility"
)

// DefaultPoolMaxConns is the size of each of the server's PostgreSQL connection pools
// when the URL has no pool_max_conns. The server opens one pool per store (main,
// visibility) in each of its services (frontend, history, matching, worker), so the
// connections it may open are several times this.
const DefaultPoolMaxConns = 20

// postgresConfigs turns a postgres:// URL into the server's SQL configs for the main
// store (the URL's database, default "temporal") and the visibility store (the same name
// with "_visibility"); pool_max_conns=N sizes each connection pool (default
// DefaultPoolMaxConns), the rest of the query string (sslmode=…) becomes connect
// attributes.
func postgresConfigs(rawURL string) (main, visibility *config.SQL, err error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return nil, nil, fmt.Errorf("temporaldev: PostgreSQL URL must look like postgres://user:password@host:5432/temporal?sslmode=disable")
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" {
		name = "temporal"
	}
	// pool_max_conns (pgxpool's name) sizes each of the server's connection pools; it is
	// not a connect attribute (PostgreSQL would reject it as a run-time parameter).
	stripped, maxConns, err := storage.PoolMaxConns(rawURL, DefaultPoolMaxConns)
	if err != nil {
		return nil, nil, fmt.Errorf("temporaldev: %w", err)
	}
	u, _ = url.Parse(stripped)
	attrs := map[string]string{}
	for k, v := range u.Query() {
		attrs[k] = v[0]
	}
	pw, _ := u.User.Password()
	base := config.SQL{
		PluginName: pgplugin.PluginNamePGX, ConnectAddr: host, ConnectProtocol: "tcp", User: u.User.Username(), Password: pw,
		ConnectAttributes: attrs, MaxConns: maxConns, MaxIdleConns: maxConns, MaxConnLifetime: time.Hour,
	}
	m, v := base, base
	m.DatabaseName, v.DatabaseName = name, name+"_visibility"
	return &m, &v, nil
}

// setUpPostgres creates the database when missing and brings its schema to the version
// this server embeds. Running it again (a restart, an upgrade) applies only what is new.
func setUpPostgres(cfg *config.SQL, schemaName string, logger tlog.Logger) error {
	admin := *cfg // DoCreateDatabase connects to "postgres" to create admin.DatabaseName
	if err := sqltool.DoCreateDatabase(&admin, "postgres", logger); err != nil && !strings.Contains(err.Error(), "42P04") && !strings.Contains(err.Error(), "already exists") {
		// Creating databases needs CREATEDB; a database made by an administrator is fine.
		logger.Warn("temporaldev: could not create database; assuming it exists")
	}
	conn, err := sqltool.NewConnection(cfg, logger)
	if err != nil {
		return fmt.Errorf("temporaldev: connect to PostgreSQL database %s: %w", cfg.DatabaseName, err)
	}
	defer conn.Close()
	// Version tables only (setup-schema -v 0.0), then every versioned step
	// (update-schema), which skips the ones already applied.
	if err := schematool.NewSetupSchemaTask(conn, &schematool.SetupConfig{InitialVersion: "0.0"}, logger).Run(); err != nil {
		return fmt.Errorf("temporaldev: set up schema of %s: %w", cfg.DatabaseName, err)
	}
	if err := schematool.NewUpdateSchemaTask(conn, &schematool.UpdateConfig{DBName: cfg.DatabaseName, SchemaName: schemaName}, logger).Run(); err != nil {
		return fmt.Errorf("temporaldev: update schema of %s: %w", cfg.DatabaseName, err)
	}
	return nil
}

// Register creates namespace (with retention) and adds the custom search attributes
// that are missing, through the frontend at address. It is idempotent: an existing
// namespace and existing attributes are left alone. Deployments that run Temporal
// elsewhere (Temporal Cloud, a cluster run by another team) can call it too.
func Register(ctx context.Context, c client.Client, namespace string, retention time.Duration, attrs map[string]enums.IndexedValueType) error {
	_, err := c.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: namespace, WorkflowExecutionRetentionPeriod: durationpb.New(retention),
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("temporaldev: register namespace %s: %w", namespace, err)
	}
	// The frontend's namespace cache picks a new namespace up within its refresh interval.
	for {
		have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
		if err == nil {
			missing := map[string]enums.IndexedValueType{}
			for name, typ := range attrs {
				if got, ok := have.GetCustomAttributes()[name]; !ok {
					missing[name] = typ
				} else if got != typ {
					return fmt.Errorf("temporaldev: search attribute %s exists as %s, want %s", name, got, typ)
				}
			}
			if len(missing) == 0 {
				return nil
			}
			_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
			var already *serviceerror.AlreadyExists
			if err == nil || errors.As(err, &already) {
				continue // list again: confirms what is there now
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("temporaldev: search attributes in %s: %w", namespace, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// DropPostgres drops the databases a PostgresURL names (tests clean up with it).
func DropPostgres(rawURL string) error {
	main, vis, err := postgresConfigs(rawURL)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range []*config.SQL{main, vis} {
		cc := *c
		errs = append(errs, sqltool.DoDropDatabase(&cc, "postgres", tlog.NewNoopLogger()))
	}
	return errors.Join(errs...)
}
