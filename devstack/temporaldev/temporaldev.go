// Package temporaldev embeds a single-host Temporal server with the Temporal Web UI, on
// SQLite (the dev stack, integration tests) or on PostgreSQL (cmd/lethe-temporal, the
// multi-process test, compose). It follows the shape of the Temporal CLI's dev server: a
// static config, the schema set up by the server module's own schema tools, the
// namespace and search attributes registered before Start returns, and the UI pointed
// at the frontend.
package temporaldev

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"
	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"

	"google.golang.org/protobuf/types/known/durationpb"
	lconfig "lethe.dev/platform/config"
)

// Config configures an embedded server.
type Config struct {
	// DataDir holds the SQLite file (temporal.db), so workflows survive a restart.
	// Empty keeps everything in memory (tests). Ignored with PostgresURL.
	DataDir string
	// PostgresURL, when set, persists to PostgreSQL instead of SQLite:
	// postgres://user:password@host:5432/temporal?sslmode=disable uses the databases
	// "temporal" and "temporal_visibility" (created when missing; their schema is set up
	// or upgraded on every start).
	PostgresURL string
	// IP to bind; default 127.0.0.1.
	IP string
	// FrontendPort is the gRPC frontend; 0 picks a free port.
	FrontendPort int
	// UIPort is the Web UI; 0 means FrontendPort+1000 when free, else a free port;
	// -1 disables the UI.
	UIPort int
	// Namespace is created with the schema; default "lethe".
	Namespace string
	// Retention of closed workflows in Namespace; default 7 days.
	Retention time.Duration
	// SearchAttributes are custom search attributes registered in Namespace.
	SearchAttributes map[string]enums.IndexedValueType
	// Logger receives the server's logs at Level and above; nil discards them.
	Logger *slog.Logger
	// Level defaults to WARN: the server is chatty at INFO.
	Level slog.Level
	// HealthListen is where cmd/lethe-temporal serves /healthz; empty: none.
	HealthListen string
}

// RegisterFlags registers the flags of cmd/lethe-temporal, with defaults from the
// environment.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.PostgresURL, "postgres", lconfig.Env("TEMPORAL_POSTGRES_URL", ""), "PostgreSQL URL; its database and <database>_visibility hold Temporal's state (TEMPORAL_POSTGRES_URL)")
	fs.StringVar(&c.IP, "ip", lconfig.Env("TEMPORAL_IP", "127.0.0.1"), "address to bind (TEMPORAL_IP)")
	fs.IntVar(&c.FrontendPort, "port", lconfig.EnvInt("TEMPORAL_PORT", 7233), "frontend gRPC port (TEMPORAL_PORT)")
	fs.IntVar(&c.UIPort, "ui-port", lconfig.EnvInt("TEMPORAL_UI_PORT", 8233), "Web UI port; -1 disables it (TEMPORAL_UI_PORT)")
	fs.StringVar(&c.Namespace, "namespace", lconfig.Env("TEMPORAL_NAMESPACE", "lethe"), "namespace to register (TEMPORAL_NAMESPACE)")
	fs.DurationVar(&c.Retention, "retention", lconfig.EnvDuration("TEMPORAL_RETENTION", 30*24*time.Hour), "retention of closed workflows (TEMPORAL_RETENTION)")
	fs.StringVar(&c.HealthListen, "health-listen", lconfig.Env("TEMPORAL_HEALTH_LISTEN", ""), "HTTP address of /healthz, 200 once the namespace is ready; empty: off (TEMPORAL_HEALTH_LISTEN)")
}

// Server is a running embedded Temporal server.
type Server struct {
	server   temporal.Server
	ui       *uiserver.Server
	frontend string
	uiAddr   string
	stopOnce sync.Once
}

// errPortTaken is a server start that lost a picked port to another process between the
// pick and the bind.
var errPortTaken = errors.New("temporaldev: a picked port was taken before the server bound it")

// Start starts the server and, unless disabled, the Web UI. It returns once the frontend
// accepts connections. Ports it picks itself (the internal services', the frontend's HTTP
// port, and the frontend when FrontendPort is 0) are re-picked when another process takes
// one between the pick and the bind, which happens when many test processes pick free
// ports at once.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	for attempt := 1; ; attempt++ {
		s, err := start(ctx, cfg)
		if err == nil || !errors.Is(err, errPortTaken) || attempt == 3 {
			return s, err
		}
	}
}

func start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.IP == "" {
		cfg.IP = "127.0.0.1"
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "lethe"
	}
	if cfg.Retention == 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.Level == 0 {
		cfg.Level = slog.LevelWarn
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var err error
	if cfg.FrontendPort == 0 {
		if cfg.FrontendPort, err = freePort(cfg.IP); err != nil {
			return nil, err
		}
	}
	switch {
	case cfg.UIPort == 0 && portFree(cfg.IP, cfg.FrontendPort+1000):
		cfg.UIPort = cfg.FrontendPort + 1000
	case cfg.UIPort == 0:
		if cfg.UIPort, err = freePort(cfg.IP); err != nil {
			return nil, err
		}
	}

	var mainStore, visStore *config.SQL
	if cfg.PostgresURL != "" {
		if mainStore, visStore, err = postgresConfigs(cfg.PostgresURL); err != nil {
			return nil, err
		}
		tl := newLogger(logger, cfg.Level)
		if err := setUpPostgres(mainStore, pgSchema, tl); err != nil {
			return nil, err
		}
		if err := setUpPostgres(visStore, pgVisibilitySchema, tl); err != nil {
			return nil, err
		}
	} else {
		if mainStore, err = sqlConfig(cfg); err != nil {
			return nil, err
		}
		visStore = mainStore
	}
	conf, err := serverConfig(cfg, mainStore, visStore)
	if err != nil {
		return nil, err
	}
	hosts := map[primitives.ServiceName]static.Hosts{}
	for name, svc := range conf.Services {
		hosts[primitives.ServiceName(name)] = static.SingleLocalHost(net.JoinHostPort(cfg.IP, strconv.Itoa(svc.RPC.GRPCPort)))
	}
	dyn := dynamicconfig.StaticClient{
		// Offline use: never phone home for version checks.
		dynamicconfig.EnableServerVersionCheck.Key():                     false,
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8192,
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		// A namespace registered at start is usable within a second, not ten.
		dynamicconfig.NamespaceCacheRefreshInterval.Key(): time.Second,
	}
	srv, err := buildAndStart(conf, hosts, dyn, newLogger(logger, cfg.Level))
	if err != nil {
		return nil, err
	}
	s := &Server{server: srv, frontend: net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.FrontendPort))}
	if cfg.UIPort > 0 {
		s.ui = uiserver.NewServer(uiserveroptions.WithConfigProvider(&uiconfig.Config{
			Host: cfg.IP, Port: cfg.UIPort, TemporalGRPCAddress: s.frontend,
			EnableUI: true, DefaultNamespace: cfg.Namespace, HideLogs: true,
			CORS: uiconfig.CORS{CookieInsecure: true}, DisableNewsFetch: true,
		}))
		s.uiAddr = "http://" + net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.UIPort))
		go func() {
			// Start blocks until Stop; an early failure (port taken) is logged.
			if err := s.ui.Start(); err != nil && !errors.Is(err, context.Canceled) {
				logger.Error("temporal web UI stopped", "err", err)
			}
		}()
	}
	if err := waitForPort(ctx, s.frontend); err != nil {
		_ = s.Stop()
		return nil, err
	}
	if cfg.PostgresURL != "" {
		// SQLite gets its namespace with the schema; on PostgreSQL it goes through the API.
		if err := s.register(ctx, cfg); err != nil {
			_ = s.Stop()
			return nil, err
		}
	}
	return s, nil
}

func (s *Server) register(ctx context.Context, cfg Config) error {
	c, err := client.Dial(client.Options{HostPort: s.frontend, Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return fmt.Errorf("temporaldev: connect to own frontend: %w", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return Register(ctx, c, cfg.Namespace, cfg.Retention, cfg.SearchAttributes)
}

// FrontendAddress is the gRPC frontend's host:port.
func (s *Server) FrontendAddress() string { return s.frontend }

// UIAddress is the Web UI's URL, or "" when disabled.
func (s *Server) UIAddress() string { return s.uiAddr }

// Stop stops the UI and the server; it is safe to call more than once.
func (s *Server) Stop() error {
	var err error
	s.stopOnce.Do(func() {
		if s.ui != nil {
			s.ui.Stop()
		}
		err = s.server.Stop()
	})
	return err
}

func sqlConfig(cfg Config) (*config.SQL, error) {
	conf := &config.SQL{PluginName: sqliteplugin.PluginName}
	if cfg.DataDir == "" {
		conf.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		conf.DatabaseName = "lethe-" + strconv.Itoa(rand.IntN(1<<30))
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("temporaldev: data directory: %w", err)
		}
		conf.ConnectAttributes = map[string]string{"mode": "rwc"}
		conf.DatabaseName = filepath.Join(cfg.DataDir, "temporal.db")
	}
	// The schema is set up once; a restart reuses the file and its workflows.
	if _, err := os.Stat(conf.DatabaseName); cfg.DataDir == "" || os.IsNotExist(err) {
		if err := sqliteschema.SetupSchema(conf); err != nil {
			return nil, fmt.Errorf("temporaldev: set up schema: %w", err)
		}
	}
	ns, err := sqliteschema.NewNamespaceConfig("active", cfg.Namespace, false, cfg.SearchAttributes)
	if err != nil {
		return nil, fmt.Errorf("temporaldev: namespace %s: %w", cfg.Namespace, err)
	}
	ns.Detail.Config.Retention = durationpb.New(cfg.Retention)
	def, err := sqliteschema.NewNamespaceConfig("active", "default", false, nil)
	if err != nil {
		return nil, err
	}
	// Creating a namespace that exists is a no-op, so a restart keeps the first one.
	if err := sqliteschema.CreateNamespaces(conf, ns, def); err != nil {
		return nil, fmt.Errorf("temporaldev: create namespaces: %w", err)
	}
	return conf, nil
}

func serverConfig(cfg Config, mainStore, visStore *config.SQL) (*config.Config, error) {
	var conf config.Config
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = cfg.IP
	conf.Persistence.DefaultStore = "default"
	conf.Persistence.VisibilityStore = "visibility"
	conf.Persistence.NumHistoryShards = 1
	if cfg.PostgresURL != "" {
		conf.Persistence.NumHistoryShards = 4
	}
	conf.Persistence.DataStores = map[string]config.DataStore{"default": {SQL: mainStore}, "visibility": {SQL: visStore}}
	if visStore == mainStore {
		// SQLite keeps both in one file, reached through one store.
		conf.Persistence.VisibilityStore = "default"
		delete(conf.Persistence.DataStores, "visibility")
	}
	httpPort, err := freePort(cfg.IP)
	if err != nil {
		return nil, err
	}
	conf.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        "active",
		CurrentClusterName:       "active",
		ClusterInformation: map[string]cluster.ClusterInformation{"active": {
			Enabled:                true,
			InitialFailoverVersion: 1,
			RPCAddress:             net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.FrontendPort)),
			HTTPAddress:            net.JoinHostPort(cfg.IP, strconv.Itoa(httpPort)),
			// A fixed id (it must be a UUID) so restarts on the same database agree.
			ClusterID: "7e3b5a4c-1f0d-4c2e-9a8b-6d5f4e3c2b1a",
		}},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{}
	for _, name := range []string{"frontend", "history", "matching", "worker"} {
		var svc config.Service
		svc.RPC.BindOnIP = cfg.IP
		if name == "frontend" {
			svc.RPC.GRPCPort = cfg.FrontendPort
			svc.RPC.HTTPPort = httpPort
		} else if svc.RPC.GRPCPort, err = freePort(cfg.IP); err != nil {
			return nil, err
		}
		conf.Services[name] = svc
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.FrontendPort))
	return &conf, nil
}

// buildAndStart builds and starts the server. The server's logger panics on Fatal, which
// is how it reports a listener it could not bind; that panic becomes errPortTaken.
func buildAndStart(conf *config.Config, hosts map[primitives.ServiceName]static.Hosts, dyn dynamicconfig.StaticClient, l log.Logger) (srv temporal.Server, err error) {
	defer func() {
		if p := recover(); p != nil {
			msg := fmt.Sprint(p)
			if !strings.Contains(msg, "listener") {
				panic(p)
			}
			srv, err = nil, fmt.Errorf("%w (%s)", errPortTaken, msg)
		}
	}()
	srv, err = temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(l),
		temporal.WithDynamicConfigClient(dyn),
	)
	if err != nil {
		return nil, fmt.Errorf("temporaldev: build server: %w", portTaken(err))
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("temporaldev: start server: %w", portTaken(err))
	}
	return srv, nil
}

// portTaken marks a bind failure as errPortTaken so Start picks other ports.
func portTaken(err error) error {
	if strings.Contains(err.Error(), "address already in use") {
		return errors.Join(errPortTaken, err)
	}
	return err
}

func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("temporaldev: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portFree(ip string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func waitForPort(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("temporaldev: frontend %s did not come up: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
