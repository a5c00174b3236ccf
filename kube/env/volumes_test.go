package env

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/kloop/kloop/kube/workload"
)

func keyItems(pairs ...string) []corev1.KeyToPath {
	var items []corev1.KeyToPath
	for i := 0; i+1 < len(pairs); i += 2 {
		items = append(items, corev1.KeyToPath{Key: pairs[i], Path: pairs[i+1]})
	}
	return items
}

func cmVolume(name, cmName string, items []corev1.KeyToPath, mode *int32, optional bool) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: cmName}, Items: items, DefaultMode: mode, Optional: ptrTo(optional)}}}
}

func secretVolume(name, secName string, items []corev1.KeyToPath, mode *int32, optional bool) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: secName, Items: items, DefaultMode: mode, Optional: ptrTo(optional)}}}
}

// tree lists root as "path mode [content]" lines: what a developer sees.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			out = append(out, rel+"/ "+info.Mode().Perm().String())
			return nil
		}
		if rel == rootMarker {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out = append(out, rel+" "+info.Mode().Perm().String()+" "+string(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVolumesMaterializedAtMountPaths(t *testing.T) {
	app := corev1.Container{
		Name: "app",
		Env:  []corev1.EnvVar{fieldEnv("POD", "metadata.name"), valueEnv("EMPTYVAR", "")},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "all", MountPath: "/etc/app"},
			{Name: "items", MountPath: "/etc/items"},
			{Name: "creds", MountPath: "/var/run/creds"},
			{Name: "creds", MountPath: "/etc/token", SubPath: "token"},
			{Name: "all", MountPath: "/config/b.txt", SubPath: "B"},
			{Name: "nested", MountPath: "/srv", SubPath: "conf"},
			{Name: "byPod", MountPath: "/logs", SubPathExpr: "$(POD)/data"},
			{Name: "proj", MountPath: "/proj"},
			{Name: "optional", MountPath: "/opt/none"},
			{Name: "scratch", MountPath: "/tmp/scratch"},
			{Name: "pvc", MountPath: "/data"},
			{Name: "escape", MountPath: "/../../escape"},
		},
	}
	pod := runningPod(app)
	pod.Spec.Volumes = []corev1.Volume{
		cmVolume("all", "app", nil, nil, false),
		cmVolume("items", "app", append(keyItems("A", "sub/dir/a.conf"), corev1.KeyToPath{Key: "B", Path: "run.sh", Mode: ptrTo[int32](0o755)}), ptrTo[int32](0o444), false),
		secretVolume("creds", "creds", nil, ptrTo[int32](0o400), false),
		cmVolume("nested", "other", keyItems("C", "conf/c.yaml", "SHARED", "top.txt"), nil, false),
		{Name: "byPod", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "proj", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "other"}, Items: keyItems("C", "c")}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Items: keyItems("token", "secret/token")}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}, Optional: ptrTo(true)}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
				{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
			}}},
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
		}}}},
		cmVolume("optional", "absent", nil, nil, true),
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "pvc", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
		cmVolume("escape", "other", keyItems("C", "../../../outside"), nil, false),
	}
	r := newTestResolver(pod, true)
	vars, err := r.env(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	files, err := r.materialize(context.Background(), root, vars)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"./ -rwx------",
		"config/ -rwx------", "config/b.txt -rw------- b-app",
		"escape/ -rwx------", "escape/outside -rw------- c-other",
		"etc/ -rwx------",
		"etc/app/ -rwx------", "etc/app/A -rw------- from-app", "etc/app/B -rw------- b-app", "etc/app/SHARED -rw------- app",
		"etc/items/ -rwx------", "etc/items/run.sh -rwx------ b-app",
		"etc/items/sub/ -rwx------", "etc/items/sub/dir/ -rwx------", "etc/items/sub/dir/a.conf -r-------- from-app",
		"etc/token -r-------- s3cr3t",
		"logs/ -rwx------", // the empty subdirectory of the emptyDir
		"opt/ -rwx------", "opt/none/ -rwx------",
		"proj/ -rwx------", "proj/c -rw------- c-other", "proj/labels -rw------- app=\"orders\"\ntier=\"web\"", "proj/name -rw------- orders-7d9-abcde",
		"proj/secret/ -rwx------", "proj/secret/token -rw------- s3cr3t",
		"srv/ -rwx------", "srv/c.yaml -rw------- c-other",
		"tmp/ -rwx------", "tmp/scratch/ -rwx------",
		"var/ -rwx------", "var/run/ -rwx------", "var/run/creds/ -rwx------",
		"var/run/creds/multi -r-------- line1\nline2 'q' \"dq\" $HOME\n", "var/run/creds/token -r-------- s3cr3t",
	}
	if got := tree(t, root); !slices.Equal(got, want) {
		t.Errorf("tree:\n got %q\nwant %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(parent, "outside")); err == nil {
		t.Error("an item path escaped the root")
	}
	var secretFiles []string
	for _, f := range files {
		if f.Secret {
			secretFiles = append(secretFiles, f.MountPath)
		}
	}
	wantSecret := []string{"/var/run/creds/multi", "/var/run/creds/token", "/etc/token", "/proj/secret/token"}
	if !slices.Equal(secretFiles, wantSecret) {
		t.Errorf("secret files %q, want %q", secretFiles, wantSecret)
	}
	for _, w := range []string{"volume pvc (persistentVolumeClaim) mounted at /data is not materialized", `serviceAccountToken "token" is not materialized`, `optional ConfigMap "absent" not found`, `optional Secret "gone" not found`} {
		if !slices.ContainsFunc(r.warnings, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("no warning %q in %q", w, r.warnings)
		}
	}

	// A second resolution replaces the content: nothing stale survives.
	pod.Spec.Containers[0].VolumeMounts = pod.Spec.Containers[0].VolumeMounts[:1]
	r = newTestResolver(pod, true)
	if _, err := r.materialize(context.Background(), root, vars); err != nil {
		t.Fatal(err)
	}
	want = []string{"./ -rwx------", "etc/ -rwx------", "etc/app/ -rwx------", "etc/app/A -rw------- from-app", "etc/app/B -rw------- b-app", "etc/app/SHARED -rw------- app"}
	if got := tree(t, root); !slices.Equal(got, want) {
		t.Errorf("after a second resolution:\n got %q\nwant %q", got, want)
	}
}

func TestVolumeErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		vol   corev1.Volume
		mount corev1.VolumeMount
		want  string
	}{
		{"missing configmap", cmVolume("v", "absent", nil, nil, false), corev1.VolumeMount{Name: "v", MountPath: "/x"},
			`volume v: ConfigMap "absent" not found in namespace "dev" (the reference is not optional)`},
		{"missing secret key", secretVolume("v", "creds", keyItems("nokey", "f"), nil, false), corev1.VolumeMount{Name: "v", MountPath: "/x"},
			`volume v: Secret "creds" in namespace "dev" has no key "nokey"`},
		{"no such volume", cmVolume("v", "app", nil, nil, false), corev1.VolumeMount{Name: "other", MountPath: "/x"},
			`volumeMount /x: no volume named "other"`},
		{"subPathExpr with undefined var", cmVolume("v", "app", nil, nil, false), corev1.VolumeMount{Name: "v", MountPath: "/x", SubPathExpr: "$(NOPE)/$(EMPTYVAR)"},
			`volumeMount /x subPathExpr: missing value for EMPTYVAR, NOPE`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := runningPod(corev1.Container{Name: "app", Env: []corev1.EnvVar{valueEnv("EMPTYVAR", "")}, VolumeMounts: []corev1.VolumeMount{tc.mount}})
			pod.Spec.Volumes = []corev1.Volume{tc.vol}
			r := newTestResolver(pod, true)
			vars, _ := r.env(context.Background())
			_, err := r.materialize(context.Background(), t.TempDir(), vars)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRootNotOwnedByKloopIsRefused(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "precious.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	pod := runningPod(corev1.Container{Name: "app", VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: "/x"}}})
	pod.Spec.Volumes = []corev1.Volume{cmVolume("v", "app", nil, nil, false)}
	_, err := newTestResolver(pod, true).materialize(context.Background(), root, nil)
	if err == nil || !strings.Contains(err.Error(), "is not empty and was not created by kloop") {
		t.Fatalf("err = %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(root, "precious.txt")); err != nil || string(data) != "mine" {
		t.Errorf("the user's file was touched: %q, %v", data, err)
	}
	if errors.Is(err, ErrMissingRef) {
		t.Error("wrong error class")
	}
}

func TestLocalMode(t *testing.T) {
	for k, want := range map[int32]os.FileMode{0o644: 0o600, 0o600: 0o600, 0o755: 0o700, 0o444: 0o400, 0o400: 0o400, 0o440: 0o400, 0o420: 0o600, 0o0: 0o400, 0o777: 0o700, 0o111: 0o500} {
		if got := localMode(k); got != want {
			t.Errorf("localMode(%o) = %o, want %o", k, got, want)
		}
	}
}

func TestDefaultRoot(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	got, err := DefaultRoot("dev", workload.Workload{Kind: workload.StatefulSet, Name: "db"})
	if err != nil || got != "/run/user/1000/kloop/root/dev/statefulset-db" {
		t.Errorf("DefaultRoot = %q, %v", got, err)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_CACHE_HOME", "/home/me/.cache")
	if got, err := DefaultRoot("../x", workload.Workload{Kind: workload.Deployment, Name: "orders"}); err != nil || got != "/home/me/.cache/kloop/root/x/deployment-orders" {
		t.Errorf("DefaultRoot = %q, %v", got, err)
	}
}
