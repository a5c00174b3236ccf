package cluster

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkDeploymentToPodRunning measures, per iteration, the time from
// creating a one-replica Deployment to its pod Running (s/running), and on
// to its stand-in accepting connections (s/serving).
func BenchmarkDeploymentToPodRunning(b *testing.B) {
	env := New(b)
	si := env.StartStandIns(b, DefaultImages())
	ctx := context.Background()
	var running, serving time.Duration
	i := 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("bench-%d", i)
		labels := map[string]string{"app": name}
		one := int32(1)
		start := time.Now()
		_, err := env.Client.AppsV1().Deployments(env.Namespace).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{
				Replicas: &one,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "users", Image: "ko://github.com/kloop/kloop/test/testdata/users",
						Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
					}}},
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		pod := env.WaitPodsRunning(b, "app="+name, 1)[0]
		running += time.Since(start)
		p := si.Wait(b, pod.Name, "users")
		if conn, err := net.Dial("tcp", p.Addr(8080)); err == nil {
			conn.Close()
		}
		serving += time.Since(start)
		b.StopTimer()
		if err := env.Client.AppsV1().Deployments(env.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(running.Seconds()/float64(b.N), "s/running")
	b.ReportMetric(serving.Seconds()/float64(b.N), "s/serving")
}
