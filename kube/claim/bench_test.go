package claim

import (
	"fmt"
	"slices"
	"sync"
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

// BenchmarkClaimRace measures claims under contention: per iteration, 50
// claimers (each its own holder and client) claim from a pool of 100
// slots at once. Reported: p50/p99 of each claim's latency, and the
// latency of one claim alone on the same pool first (the baseline).
// Every claimer must get a slot of its own; releases run outside the
// timer.
//
//	go test ./kube/claim -run '^$' -bench ClaimRace -benchtime 3x
func BenchmarkClaimRace(b *testing.B) {
	const claimers, slots = 50, 100
	cfg, _ := testCluster(b)
	pool := newPool(b, cfg, slots)
	cs := make([]*Claimer, claimers)
	for i := range cs {
		cs[i] = newClaimer(b, cfg, fmt.Sprintf("racer%d@bench", i))
	}
	ctx := b.Context()
	var alone []time.Duration
	for range 5 {
		start := time.Now()
		held, err := cs[0].Claim(ctx, pool, time.Hour, nil)
		if err != nil {
			b.Fatal(err)
		}
		alone = append(alone, time.Since(start))
		if err := cs[0].Release(ctx, held, nil); err != nil {
			b.Fatal(err)
		}
	}
	var raced []time.Duration
	for b.Loop() {
		lat := make([]time.Duration, claimers)
		held := make([]*Claim, claimers)
		errs := make([]error, claimers)
		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Go(func() {
				start := time.Now()
				held[i], errs[i] = c.Claim(ctx, pool, time.Hour, nil)
				lat[i] = time.Since(start)
			})
		}
		wg.Wait()
		b.StopTimer()
		seen := map[string]string{}
		for i, h := range held {
			if errs[i] != nil {
				b.Fatalf("claimer %d of %d: %v", i, claimers, errs[i])
			}
			if other, dup := seen[h.Namespace]; dup {
				b.Fatalf("%s was given to %s and %s", h.Namespace, other, h.Holder)
			}
			seen[h.Namespace] = h.Holder
		}
		raced = append(raced, lat...)
		for i, h := range held {
			wg.Go(func() {
				if err := cs[i].Release(ctx, h, nil); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		b.StartTimer()
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(percentile(alone, 50), "alone-p50-ms")
	b.ReportMetric(percentile(raced, 50), "raced-p50-ms")
	b.ReportMetric(percentile(raced, 99), "raced-p99-ms")
}
