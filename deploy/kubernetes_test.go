package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/appfence/appfence/config"
)

// k8sObject is the part of a Kubernetes object the test reads.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		ExternalTrafficPolicy string `yaml:"externalTrafficPolicy"`
		Ports                 []struct {
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
			Protocol   string `yaml:"protocol"`
		} `yaml:"ports"`
		Template struct {
			Spec struct {
				SecurityContext struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
				} `yaml:"securityContext"`
				Containers []struct {
					Args  []string `yaml:"args"`
					Ports []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
						Protocol      string `yaml:"protocol"`
					} `yaml:"ports"`
					ReadinessProbe struct {
						HTTPGet struct {
							Path string `yaml:"path"`
						} `yaml:"httpGet"`
					} `yaml:"readinessProbe"`
					LivenessProbe struct {
						HTTPGet struct {
							Path string `yaml:"path"`
						} `yaml:"httpGet"`
					} `yaml:"livenessProbe"`
					SecurityContext struct {
						ReadOnlyRootFilesystem bool `yaml:"readOnlyRootFilesystem"`
					} `yaml:"securityContext"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// TestKubernetesManifest checks deploy/kubernetes/appfence.yaml: every
// document parses, the embedded configuration is valid AppFence config and
// listens where the container ports say, the probes use /readyz and
// /healthz, and the DNS Service keeps client source addresses (exemptions
// are by address).
func TestKubernetesManifest(t *testing.T) {
	data, err := os.ReadFile("kubernetes/appfence.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]k8sObject{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		objs[o.Kind+"/"+o.Metadata.Name] = o
	}
	cm, ok := objs["ConfigMap/appfence"]
	if !ok {
		t.Fatalf("no ConfigMap appfence: %v", objs)
	}
	cfg, err := config.Parse("appfence.toml", []byte(cm.Data["appfence.toml"]), t.TempDir())
	if err != nil {
		t.Fatalf("the ConfigMap's appfence.toml: %v", err)
	}
	if cfg.Server.Listen[0] != ":5053" || cfg.Metrics.Listen != ":9153" {
		t.Errorf("listen %v, metrics %q: the container ports are 5053 and 9153", cfg.Server.Listen, cfg.Metrics.Listen)
	}

	dep := objs["Deployment/appfence"].Spec.Template.Spec
	if !dep.SecurityContext.RunAsNonRoot || len(dep.Containers) != 1 {
		t.Fatalf("deployment pod spec: %+v", dep)
	}
	c := dep.Containers[0]
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" || !c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("container: %+v", c)
	}
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name+"/"+p.Protocol] = true
	}
	for _, want := range []string{"dns-udp/UDP", "dns-tcp/TCP", "metrics/TCP"} {
		if !ports[want] {
			t.Errorf("container ports lack %s: %v", want, c.Ports)
		}
	}

	svc := objs["Service/appfence-dns"]
	if svc.Spec.ExternalTrafficPolicy != "Local" {
		t.Errorf("DNS Service externalTrafficPolicy %q: want Local, or every device has the node's address", svc.Spec.ExternalTrafficPolicy)
	}
	for _, p := range svc.Spec.Ports {
		if p.Port != 53 || !ports[p.TargetPort+"/"+p.Protocol] {
			t.Errorf("DNS Service port %+v does not reach a container port", p)
		}
	}
}
