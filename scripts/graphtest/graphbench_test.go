// moby's own graphdriver benchmarks (daemon/graphdriver/graphtest, Docker 20.10, from Debian's
// golang-github-docker-docker-dev) run against Docker's built-in overlay and overlay2 drivers and
// against ovlink's graphdriver plugin through dockerd's own plugin adapter (graphDriverProxy).
// GRAPHTEST_DRIVER picks the driver: overlay, overlay2, or plugin:NAME:SOCKET (a running
// `ovlink plugin serve --socket SOCKET`). Run by scripts/bench-graphtest.sh; never by cargo.
package graphtest_bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/daemon/graphdriver"
	"github.com/docker/docker/daemon/graphdriver/graphtest"
	_ "github.com/docker/docker/daemon/graphdriver/overlay"
	_ "github.com/docker/docker/daemon/graphdriver/overlay2"
	"github.com/docker/docker/pkg/idtools"
	"github.com/docker/docker/pkg/plugingetter"
	"github.com/docker/docker/pkg/plugins"
	"github.com/docker/docker/pkg/reexec"
	"github.com/docker/go-connections/tlsconfig"
)

// A v1 plugin on a unix socket, as dockerd's plugin store would hand it to the driver.
type sockPlugin struct {
	name   string
	client *plugins.Client
}

func (p *sockPlugin) Name() string               { return p.name }
func (p *sockPlugin) ScopedPath(s string) string { return s }
func (p *sockPlugin) IsV1() bool                 { return true }
func (p *sockPlugin) Client() *plugins.Client    { return p.client }

type getter struct{ p *sockPlugin }

func (g getter) Get(name, capability string, mode int) (plugingetter.CompatPlugin, error) {
	return g.p, nil
}
func (g getter) GetAllByCap(string) ([]plugingetter.CompatPlugin, error)      { return nil, nil }
func (g getter) GetAllManagedPluginsByCap(string) []plugingetter.CompatPlugin { return nil }
func (g getter) Handle(string, func(string, *plugins.Client))                 {}

var driver string

func TestMain(m *testing.M) {
	if reexec.Init() { // the built-in drivers' chrootarchive re-executes the test binary
		return
	}
	driver = os.Getenv("GRAPHTEST_DRIVER")
	if driver == "" {
		fmt.Fprintln(os.Stderr, "GRAPHTEST_DRIVER is required (overlay, overlay2, plugin:NAME:SOCKET)")
		os.Exit(2)
	}
	if strings.HasPrefix(driver, "plugin:") {
		parts := strings.SplitN(driver, ":", 3)
		if len(parts) != 3 {
			fmt.Fprintln(os.Stderr, "GRAPHTEST_DRIVER=plugin:NAME:SOCKET")
			os.Exit(2)
		}
		name, sock := parts[1], parts[2]
		c, err := plugins.NewClient("unix://"+sock, &tlsconfig.Options{InsecureSkipVerify: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		p := &sockPlugin{name: name, client: c}
		// graphtest looks drivers up by name in the registry; this one builds dockerd's plugin
		// proxy (home = <root>/<name>, as dockerd does).
		// Registered under another name, or GetDriver would find this function again.
		driver = "graphtest-" + name
		graphdriver.Register(driver, func(home string, opts []string, u, g []idtools.IDMap) (graphdriver.Driver, error) {
			return graphdriver.GetDriver(name, getter{p}, graphdriver.Options{
				Root: filepath.Dir(home), DriverOptions: opts, UIDMaps: u, GIDMaps: g,
				ExperimentalEnabled: true,
			})
		})
	}
	os.Exit(m.Run())
}

func BenchmarkExists(b *testing.B)         { graphtest.DriverBenchExists(b, driver) }
func BenchmarkGetEmpty(b *testing.B)       { graphtest.DriverBenchGetEmpty(b, driver) }
func BenchmarkDiffBase(b *testing.B)       { graphtest.DriverBenchDiffBase(b, driver) }
func BenchmarkDiffSmallUpper(b *testing.B) { graphtest.DriverBenchDiffN(b, 10, 10, driver) }
func BenchmarkDiff10KFileUpper(b *testing.B) {
	graphtest.DriverBenchDiffN(b, 10, 10000, driver)
}
func BenchmarkDiffApply100(b *testing.B) { graphtest.DriverBenchDiffApplyN(b, 100, driver) }
func BenchmarkDiff20Layers(b *testing.B) { graphtest.DriverBenchDeepLayerDiff(b, 20, driver) }
func BenchmarkRead20Layers(b *testing.B) { graphtest.DriverBenchDeepLayerRead(b, 20, driver) }
