package packaging_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/healgate/healgate/config"
)

// manifests holds every object of packaging/kubernetes, decoded strictly.
type manifests struct {
	configMaps   map[string]*corev1.ConfigMap
	deployments  map[string]*appsv1.Deployment
	services     map[string]*corev1.Service
	netPolicies  map[string]*networkingv1.NetworkPolicy
	totalObjects int
}

// loadManifests decodes every YAML document of packaging/kubernetes into
// its k8s.io/api type with sigs.k8s.io/yaml's strict mode: an unknown or
// duplicated field, a wrong type or an unknown kind fails the test.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in kubernetes/: %v", err)
	}
	m := &manifests{
		configMaps:  map[string]*corev1.ConfigMap{},
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		netPolicies: map[string]*networkingv1.NetworkPolicy{},
	}
	for _, file := range files {
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(readFile(t, file))))
		for i := 0; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s document %d: %v", file, i, err)
			}
			var (
				obj  any
				name func() string
			)
			switch gvk := tm.APIVersion + "/" + tm.Kind; gvk {
			case "v1/ConfigMap":
				o := &corev1.ConfigMap{}
				obj, name = o, func() string { m.configMaps[o.Name] = o; return o.Name }
			case "apps/v1/Deployment":
				o := &appsv1.Deployment{}
				obj, name = o, func() string { m.deployments[o.Name] = o; return o.Name }
			case "v1/Service":
				o := &corev1.Service{}
				obj, name = o, func() string { m.services[o.Name] = o; return o.Name }
			case "networking.k8s.io/v1/NetworkPolicy":
				o := &networkingv1.NetworkPolicy{}
				obj, name = o, func() string { m.netPolicies[o.Name] = o; return o.Name }
			default:
				t.Fatalf("%s document %d: kind %q is not one the test knows: add it", file, i, gvk)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s document %d (%s): strict decoding: %v", file, i, tm.Kind, err)
			}
			if n := name(); n == "" {
				t.Errorf("%s document %d (%s) has no metadata.name", file, i, tm.Kind)
			}
			m.totalObjects++
		}
	}
	return m
}

// stripComments drops YAML comment lines, to spot documents that hold
// nothing else.
func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

// TestKubernetesManifestsDecodeStrictly: every document is a known kind,
// decodes with no unknown field, and the strict decoder does reject an
// unknown field (so the test cannot pass vacuously).
func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	if len(m.deployments) != 1 || len(m.configMaps) != 1 || len(m.services) != 1 {
		t.Errorf("want one Deployment, ConfigMap and Service; got %d, %d, %d", len(m.deployments), len(m.configMaps), len(m.services))
	}
	bad := []byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selectr: {a: b}}\n")
	if err := yaml.UnmarshalStrict(bad, &corev1.Service{}); err == nil {
		t.Error("strict decoding accepted an unknown field")
	}
}

// TestKubernetesSidecarWiring checks what makes the pod work: healgate is a
// native sidecar; Document Server's liveness is healgate's
// /healthz/upstream and its readiness /readyz, on healgate's admin port;
// the Service targets healgate's proxy port; the ConfigMap is a valid
// healgate config whose ports, token file and mount paths agree with the
// Deployment.
func TestKubernetesSidecarWiring(t *testing.T) {
	m := loadManifests(t)
	var dep *appsv1.Deployment
	for _, d := range m.deployments {
		dep = d
	}
	if dep == nil {
		t.Fatal("no Deployment")
	}
	pod := dep.Spec.Template.Spec

	var hg *corev1.Container
	for i := range pod.InitContainers {
		if pod.InitContainers[i].Name == "healgate" {
			hg = &pod.InitContainers[i]
		}
	}
	if hg == nil {
		t.Fatal("no init container named healgate")
	}
	if hg.RestartPolicy == nil || *hg.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("healgate init container restartPolicy %v, want Always (a native sidecar)", hg.RestartPolicy)
	}
	if sc := hg.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("healgate's securityContext is not non-root, read-only, no privilege escalation, all capabilities dropped: %+v", hg.SecurityContext)
	}
	ports := map[string]int32{}
	for _, p := range hg.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] == 0 || ports["admin"] == 0 {
		t.Fatalf("healgate's ports %v: want http and admin", ports)
	}

	// The config: -config path, mounted from the ConfigMap, valid.
	cfgPath := ""
	for i, a := range hg.Args {
		if a == "-config" && i+1 < len(hg.Args) {
			cfgPath = hg.Args[i+1]
		}
	}
	if len(hg.Args) == 0 || hg.Args[0] != "run" || cfgPath == "" {
		t.Fatalf("healgate args %q: want run -config FILE", hg.Args)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range hg.VolumeMounts {
		mounts[vm.MountPath] = vm
	}
	cfgMount, ok := mounts[cfgPath]
	if !ok {
		t.Fatalf("nothing is mounted at %s", cfgPath)
	}
	var cm *corev1.ConfigMap
	var tokenSecretDir string
	for _, v := range pod.Volumes {
		if v.Name == cfgMount.Name && v.ConfigMap != nil {
			cm = m.configMaps[v.ConfigMap.Name]
		}
		if v.Secret != nil {
			for _, vm := range hg.VolumeMounts {
				if vm.Name == v.Name {
					tokenSecretDir = vm.MountPath
				}
			}
			if v.Secret.Optional != nil && *v.Secret.Optional {
				t.Errorf("the token secret is optional: healgate would start without its token")
			}
		}
	}
	if cm == nil {
		t.Fatalf("the volume mounted at %s is not one of the ConfigMaps", cfgPath)
	}
	data, ok := cm.Data[cfgMount.SubPath]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %q", cm.Name, cfgMount.SubPath)
	}
	cfg, err := config.Parse("configmap/"+cm.Name, []byte(data))
	if err != nil {
		t.Fatalf("the ConfigMap's healgate config does not pass config.Parse and Validate:\n%v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Healing.Action != config.ActionNone || len(cfg.Healing.Units) != 0 {
		t.Errorf("healing action %q units %v: a pod has no systemd, want action none and no units", cfg.Healing.Action, cfg.Healing.Units)
	}
	if len(cfg.Upstreams) != 1 || cfg.Upstreams[0].URL != "http://127.0.0.1:8000" {
		t.Errorf("upstreams %+v, want DocService at http://127.0.0.1:8000 in the pod", cfg.Upstreams)
	}
	if p := listenPort(t, cfg.Listen); p != ports["http"] {
		t.Errorf("config listen %s, container port http %d", cfg.Listen, ports["http"])
	}
	if p := listenPort(t, cfg.Admin.Listen); p != ports["admin"] {
		t.Errorf("config admin.listen %s, container port admin %d", cfg.Admin.Listen, ports["admin"])
	}
	if tokenSecretDir == "" || path.Dir(cfg.Admin.TokenFile) != tokenSecretDir {
		t.Errorf("admin.token_file %q is not in the secret's mount %q", cfg.Admin.TokenFile, tokenSecretDir)
	}

	// Document Server's probes point at healgate's admin port.
	var ds *corev1.Container
	for i := range pod.Containers {
		if pod.Containers[i].Name == "documentserver" {
			ds = &pod.Containers[i]
		}
	}
	if ds == nil {
		t.Fatal("no container named documentserver")
	}
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{
		{"livenessProbe", ds.LivenessProbe, "/healthz/upstream"},
		{"readinessProbe", ds.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("documentserver %s: want an httpGet probe on healgate", p.kind)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || g.Port.IntValue() != int(ports["admin"]) {
			t.Errorf("documentserver %s: %s on port %s, want %s on healgate's admin port %d", p.kind, g.Path, g.Port.String(), p.path, ports["admin"])
		}
	}

	// The Service targets healgate, not DocService.
	for _, svc := range m.services {
		for _, sp := range svc.Spec.Ports {
			tp := sp.TargetPort
			if tp.String() != "http" && tp.IntValue() != int(ports["http"]) {
				t.Errorf("Service %s port %d targets %s, want healgate's http port", svc.Name, sp.Port, tp.String())
			}
		}
		for k, v := range svc.Spec.Selector {
			if dep.Spec.Template.Labels[k] != v {
				t.Errorf("Service %s selector %s=%s does not select the Deployment's pods", svc.Name, k, v)
			}
		}
	}
}

// listenPort returns the port of a host:port listen address.
func listenPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen %q: %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("listen %q: %v", addr, err)
	}
	if strings.HasPrefix(addr, "127.") {
		t.Errorf("listen %q is loopback: unreachable from the Service and the kubelet", addr)
	}
	return int32(n)
}
