package deploy

import (
	"bytes"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// TestKubernetesStrict decodes every document of the manifests strictly
// into the k8s.io/api type of its kind, so that a misspelt or misplaced
// field fails the test, and checks what operations rely on: three
// replicas spread over nodes and zones, a PodDisruptionBudget of one,
// memory requests and limits with GOMEMLIMIT taken from the limit, and a
// ServiceMonitor selecting the metrics Service's port.
func TestKubernetesStrict(t *testing.T) {
	var dep appsv1.Deployment
	var pdb policyv1.PodDisruptionBudget
	services := map[string]corev1.Service{}
	for _, doc := range bytes.Split(mustRead(t, "kubernetes/appfence.yaml"), []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		var err error
		switch meta.Kind {
		case "ConfigMap":
			err = yaml.UnmarshalStrict(doc, &corev1.ConfigMap{})
		case "Deployment":
			err = yaml.UnmarshalStrict(doc, &dep)
		case "PodDisruptionBudget":
			err = yaml.UnmarshalStrict(doc, &pdb)
		case "Service":
			var s corev1.Service
			err = yaml.UnmarshalStrict(doc, &s)
			services[s.Name] = s
		default:
			t.Errorf("unexpected kind %q", meta.Kind)
		}
		if err != nil {
			t.Errorf("%s: %v", meta.Kind, err)
		}
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 3 {
		t.Errorf("replicas %v: want 3 or more", dep.Spec.Replicas)
	}
	keys := map[string]bool{}
	for _, c := range dep.Spec.Template.Spec.TopologySpreadConstraints {
		keys[c.TopologyKey] = c.LabelSelector != nil && c.LabelSelector.MatchLabels["app.kubernetes.io/name"] == "appfence"
	}
	if !keys["kubernetes.io/hostname"] || !keys["topology.kubernetes.io/zone"] {
		t.Errorf("topology spread %v: want nodes and zones, selecting the pods", keys)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "appfence" {
		t.Errorf("PodDisruptionBudget %+v", pdb.Spec)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	var memlimit bool
	for _, e := range c.Env {
		memlimit = memlimit || e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory"
	}
	if !memlimit {
		t.Errorf("env %+v: want GOMEMLIMIT from limits.memory", c.Env)
	}
	if !strings.Contains(string(mustRead(t, "kubernetes/appfence.yaml")), "Dockerfile") {
		t.Error("the manifest does not say which build makes its image")
	}

	// The ServiceMonitor's CRD types are not in k8s.io/api: a strict
	// decode into the fields it may use.
	var sm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port     string `json:"port"`
				Path     string `json:"path"`
				Interval string `json:"interval"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(mustRead(t, "kubernetes/servicemonitor.yaml"), &sm); err != nil {
		t.Fatalf("servicemonitor.yaml: %v", err)
	}
	metricsSvc := services["appfence-metrics"]
	for k, v := range sm.Spec.Selector.MatchLabels {
		if metricsSvc.Labels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s, which the metrics Service lacks", k, v)
		}
	}
	if dns := services["appfence-dns"]; dns.Labels["app.kubernetes.io/component"] == metricsSvc.Labels["app.kubernetes.io/component"] {
		t.Error("the ServiceMonitor's selector also matches the DNS Service")
	}
	if sm.APIVersion != "monitoring.coreos.com/v1" || sm.Kind != "ServiceMonitor" || len(sm.Spec.Endpoints) != 1 ||
		sm.Spec.Endpoints[0].Port != metricsSvc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor %+v does not scrape the metrics port", sm)
	}
}
