package env

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kloop/kloop/kube/workload"
)

// rootMarker marks a directory as a KLOOP_ROOT that kloop may empty.
const rootMarker = ".kloop-root"

// vfile is one file of a volume as the container sees it.
type vfile struct {
	data   []byte
	mode   int32 // Kubernetes mode
	secret bool
}

// localMode gives the owner the permissions a Kubernetes mode grants
// anyone, and nothing to group and others: 0644 -> 0600, 0755 -> 0700,
// 0444 -> 0400. The owner can always read.
func localMode(m int32) os.FileMode {
	bits := (m>>6 | m>>3 | m) & 7
	return os.FileMode((bits | 4) << 6)
}

// volumeFiles returns the files of a volume by path relative to the
// volume; ok is false for volume kinds that are not materialized.
func (r *resolver) volumeFiles(ctx context.Context, vol *corev1.Volume) (files map[string]vfile, ok bool, err error) {
	files = map[string]vfile{}
	why := "volume " + vol.Name
	switch {
	case vol.ConfigMap != nil:
		s := vol.ConfigMap
		err = r.keyFiles(ctx, files, "ConfigMap", s.Name, s.Items, modeOr(s.DefaultMode, corev1.ConfigMapVolumeSourceDefaultMode), isTrue(s.Optional), why)
	case vol.Secret != nil:
		s := vol.Secret
		err = r.keyFiles(ctx, files, "Secret", s.SecretName, s.Items, modeOr(s.DefaultMode, corev1.SecretVolumeSourceDefaultMode), isTrue(s.Optional), why)
	case vol.DownwardAPI != nil:
		err = r.downwardFiles(ctx, files, vol.DownwardAPI.Items, modeOr(vol.DownwardAPI.DefaultMode, corev1.DownwardAPIVolumeSourceDefaultMode), why)
	case vol.Projected != nil:
		mode := modeOr(vol.Projected.DefaultMode, corev1.ProjectedVolumeSourceDefaultMode)
		for i, src := range vol.Projected.Sources {
			swhy := fmt.Sprintf("%s source %d", why, i)
			switch {
			case src.ConfigMap != nil:
				err = r.keyFiles(ctx, files, "ConfigMap", src.ConfigMap.Name, src.ConfigMap.Items, mode, isTrue(src.ConfigMap.Optional), swhy)
			case src.Secret != nil:
				err = r.keyFiles(ctx, files, "Secret", src.Secret.Name, src.Secret.Items, mode, isTrue(src.Secret.Optional), swhy)
			case src.DownwardAPI != nil:
				err = r.downwardFiles(ctx, files, src.DownwardAPI.Items, mode, swhy)
			case src.ServiceAccountToken != nil:
				r.warnf("%s: serviceAccountToken %q is not materialized (kloop does not mint tokens for the local process)", swhy, src.ServiceAccountToken.Path)
			default:
				r.warnf("%s: this kind of projected source is not materialized", swhy)
			}
			if err != nil {
				return nil, false, err
			}
		}
	case vol.EmptyDir != nil:
	default:
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return files, true, nil
}

func modeOr(m *int32, def int32) int32 {
	if m != nil {
		return *m
	}
	return def
}

// keyFiles adds the keys of a ConfigMap or Secret (all, or the items).
func (r *resolver) keyFiles(ctx context.Context, files map[string]vfile, kind, name string, items []corev1.KeyToPath, mode int32, optional bool, why string) error {
	var data map[string][]byte
	switch kind {
	case "ConfigMap":
		cm, err := r.src.configMap(ctx, name)
		if err != nil {
			if missing, err := r.objErr(err, kind, name, why); !missing {
				return err
			}
			break
		}
		data = make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
		for k, v := range cm.Data {
			data[k] = []byte(v)
		}
		for k, v := range cm.BinaryData {
			data[k] = v
		}
	default:
		sec, err := r.src.secret(ctx, name)
		if err != nil {
			if missing, err := r.objErr(err, kind, name, why); !missing {
				return err
			}
			break
		}
		data = sec.Data
		if data == nil {
			data = map[string][]byte{}
		}
	}
	if data == nil {
		if optional {
			r.warnf("%s: optional %s %q not found; empty", why, kind, name)
			return nil
		}
		return &MissingRefError{Kind: kind, Name: name, Namespace: r.pod.Namespace, For: why}
	}
	secret := kind == "Secret"
	if len(items) == 0 {
		for k, v := range data {
			files[cleanRel(k)] = vfile{data: v, mode: mode, secret: secret}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				r.warnf("%s: optional key %q not in %s %q; skipped", why, it.Key, kind, name)
				continue
			}
			return &MissingRefError{Kind: kind, Name: name, Key: it.Key, Namespace: r.pod.Namespace, For: why}
		}
		files[cleanRel(it.Path)] = vfile{data: v, mode: modeOr(it.Mode, mode), secret: secret}
	}
	return nil
}

// downwardFiles adds downward API items.
func (r *resolver) downwardFiles(ctx context.Context, files map[string]vfile, items []corev1.DownwardAPIVolumeFile, mode int32, why string) error {
	for _, it := range items {
		iwhy := why + " item " + it.Path
		var val string
		switch {
		case it.FieldRef != nil:
			v, err := r.fieldValue(it.FieldRef, iwhy)
			if err != nil {
				return fmt.Errorf("%s: %w", iwhy, err)
			}
			val = v
		case it.ResourceFieldRef != nil:
			v, ok, err := r.resourceValue(ctx, it.ResourceFieldRef, iwhy)
			if err != nil {
				return fmt.Errorf("%s: %w", iwhy, err)
			}
			if !ok {
				continue
			}
			val = v
		default:
			continue
		}
		files[cleanRel(it.Path)] = vfile{data: []byte(val), mode: modeOr(it.Mode, mode)}
	}
	return nil
}

// cleanRel makes p a clean relative path that cannot leave its directory.
func cleanRel(p string) string {
	return strings.TrimPrefix(filepath.Clean("/"+filepath.FromSlash(p)), string(filepath.Separator))
}

// materialize writes the volumes the container mounts under root.
func (r *resolver) materialize(ctx context.Context, root string, vars []Var) ([]File, error) {
	root, err := prepareRoot(root)
	if err != nil {
		return nil, err
	}
	envMap := map[string]string{}
	for _, v := range vars {
		envMap[v.Name] = v.Value
	}
	cache := map[string]map[string]vfile{}
	var out []File
	for _, m := range r.container.VolumeMounts {
		var vol *corev1.Volume
		for i := range r.pod.Spec.Volumes {
			if r.pod.Spec.Volumes[i].Name == m.Name {
				vol = &r.pod.Spec.Volumes[i]
			}
		}
		if vol == nil {
			return nil, fmt.Errorf("volumeMount %s: no volume named %q in the pod spec", m.MountPath, m.Name)
		}
		files, seen := cache[m.Name]
		if !seen {
			var ok bool
			files, ok, err = r.volumeFiles(ctx, vol)
			if err != nil {
				return nil, err
			}
			if !ok {
				r.warnf("volume %s (%s) mounted at %s is not materialized", m.Name, volumeKind(vol), m.MountPath)
				files = nil
			}
			cache[m.Name] = files
		}
		if files == nil {
			continue
		}
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub, err = expandSubPath(m.SubPathExpr, envMap)
			if err != nil {
				return nil, fmt.Errorf("volumeMount %s subPathExpr: %w", m.MountPath, err)
			}
		}
		dest := filepath.Join(root, filepath.Clean("/"+filepath.FromSlash(m.MountPath)))
		written, err := writeMount(dest, files, cleanRel(sub))
		if err != nil {
			return nil, fmt.Errorf("volume %s mounted at %s: %w", m.Name, m.MountPath, err)
		}
		for _, w := range written {
			rel, _ := filepath.Rel(dest, w.path)
			mp := m.MountPath
			if rel != "." {
				mp = filepath.ToSlash(filepath.Join(m.MountPath, rel))
			}
			out = append(out, File{Path: w.path, MountPath: mp, Volume: m.Name, Secret: w.secret})
		}
	}
	return out, nil
}

// expandSubPath is the kubelet's ExpandContainerVolumeMounts: every
// reference must have a non-empty value.
func expandSubPath(expr string, env map[string]string) (string, error) {
	var missing []string
	s := Expand(expr, func(name string) (string, bool) {
		v, ok := env[name]
		if !ok || v == "" {
			missing = append(missing, name)
		}
		return v, true
	})
	if len(missing) > 0 {
		sort.Strings(missing)
		return "", fmt.Errorf("missing value for %s", strings.Join(missing, ", "))
	}
	return s, nil
}

type written struct {
	path   string
	secret bool
}

// writeMount writes files (or the part under sub) at dest.
func writeMount(dest string, files map[string]vfile, sub string) ([]written, error) {
	if f, ok := files[sub]; ok && sub != "" {
		if err := writeFile(dest, f); err != nil {
			return nil, err
		}
		return []written{{dest, f.secret}}, nil
	}
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dest, err)
	}
	var out []written
	for _, p := range sortedKeys(files) {
		rel := p
		if sub != "" {
			var ok bool
			if rel, ok = strings.CutPrefix(p, sub+string(filepath.Separator)); !ok {
				continue
			}
		}
		path := filepath.Join(dest, rel)
		if err := writeFile(path, files[p]); err != nil {
			return nil, err
		}
		out = append(out, written{path, files[p].secret})
	}
	return out, nil
}

func writeFile(path string, f vfile) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	mode := localMode(f.mode)
	// Create with 0600 so the content is never readable by others, even
	// for a moment; then set the final mode.
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := fh.Write(f.data); err != nil {
		fh.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	return nil
}

// prepareRoot makes root an empty 0700 directory owned by kloop: created
// when missing; emptied when it carries the marker; refused when it is
// not empty and has no marker.
func prepareRoot(root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("KLOOP_ROOT %s: %w", root, err)
	}
	entries, err := os.ReadDir(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return "", fmt.Errorf("create KLOOP_ROOT: %w", err)
		}
	case err != nil:
		return "", fmt.Errorf("KLOOP_ROOT %s: %w", abs, err)
	default:
		marked := false
		for _, e := range entries {
			if e.Name() == rootMarker {
				marked = true
			}
		}
		if len(entries) > 0 && !marked {
			return "", fmt.Errorf("KLOOP_ROOT %s is not empty and was not created by kloop; refusing to write into it (choose an empty or new directory)", abs)
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(abs, e.Name())); err != nil {
				return "", fmt.Errorf("clear KLOOP_ROOT %s: %w", abs, err)
			}
		}
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		return "", fmt.Errorf("KLOOP_ROOT %s: %w", abs, err)
	}
	marker := []byte("This directory is KLOOP_ROOT: kloop rewrites it on every env resolution.\n")
	if err := os.WriteFile(filepath.Join(abs, rootMarker), marker, 0o600); err != nil {
		return "", fmt.Errorf("KLOOP_ROOT %s: %w", abs, err)
	}
	return abs, nil
}

func volumeKind(v *corev1.Volume) string {
	switch {
	case v.PersistentVolumeClaim != nil:
		return "persistentVolumeClaim"
	case v.HostPath != nil:
		return "hostPath"
	case v.CSI != nil:
		return "csi"
	case v.Ephemeral != nil:
		return "ephemeral"
	case v.NFS != nil:
		return "nfs"
	case v.Image != nil:
		return "image"
	}
	return "unsupported kind"
}

// DefaultRoot is a per-workload KLOOP_ROOT for callers with no better
// place: $XDG_RUNTIME_DIR/kloop/root/NAMESPACE/KIND-NAME (a private tmpfs
// on most Linux desktops, so secrets do not reach the disk), else the
// user cache directory's kloop/root/NAMESPACE/KIND-NAME.
func DefaultRoot(namespace string, w workload.Workload) (string, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("default KLOOP_ROOT: %w", err)
		}
		base = dir
	}
	return filepath.Join(base, "kloop", "root", cleanRel(namespace), cleanRel(string(w.Kind)+"-"+w.Name)), nil
}
