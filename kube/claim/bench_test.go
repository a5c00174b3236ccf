package claim

import (
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkClaimRelease measures what a developer waits for: claim (from
// the call to a held slot) and release (reset of a namespace holding a
// deployment with its pods, a service, a configmap and a secret, until it
// is empty and the lease deleted). Reported as p50/p99 in milliseconds.
//
//	go test ./kube/claim -run '^$' -bench ClaimRelease -benchtime 50x
func BenchmarkClaimRelease(b *testing.B) {
	cfg, cs := testCluster(b)
	pool := newPool(b, cfg, 1)
	c := newClaimer(b, cfg, "bench@b")
	ctx := b.Context()
	var claims, releases []time.Duration
	one := int32(1)
	labels := map[string]string{"app": "bench"}
	for b.Loop() {
		start := time.Now()
		held, err := c.Claim(ctx, pool, time.Hour, nil)
		if err != nil {
			b.Fatal(err)
		}
		claims = append(claims, time.Since(start))

		ns := held.Namespace
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web"}}}}},
		}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		eventually(b, "deployment has a pod", func() (bool, error) {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=bench"})
			return err == nil && len(pods.Items) > 0, err
		})

		start = time.Now()
		if err := c.Release(ctx, held, nil); err != nil {
			b.Fatal(err)
		}
		releases = append(releases, time.Since(start))
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(percentile(claims, 50), "claim-p50-ms")
	b.ReportMetric(percentile(claims, 99), "claim-p99-ms")
	b.ReportMetric(percentile(releases, 50), "release-p50-ms")
	b.ReportMetric(percentile(releases, 99), "release-p99-ms")
}

func percentile(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return float64(s[i]) / float64(time.Millisecond)
}
