package standin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// materializeVolumes writes the pod's ConfigMap, Secret, downward API and
// emptyDir volumes under dir/<volume> and returns volume name -> path.
// Volumes of other kinds are skipped: a stand-in that mounts one sees an
// empty directory, which its logs will show.
func materializeVolumes(ctx context.Context, src *objectSource, pod *corev1.Pod, dir string) (map[string]string, error) {
	paths := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		path := filepath.Join(dir, v.Name)
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, err
		}
		paths[v.Name] = path
		var err error
		switch {
		case v.ConfigMap != nil:
			err = writeConfigMapVolume(ctx, src, path, v.ConfigMap.Name, v.ConfigMap.Items, isTrue(v.ConfigMap.Optional))
		case v.Secret != nil:
			err = writeSecretVolume(ctx, src, path, v.Secret.SecretName, v.Secret.Items, isTrue(v.Secret.Optional))
		case v.DownwardAPI != nil:
			err = writeDownwardAPIVolume(pod, path, v.DownwardAPI.Items)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				switch {
				case s.ConfigMap != nil && err == nil:
					err = writeConfigMapVolume(ctx, src, path, s.ConfigMap.Name, s.ConfigMap.Items, isTrue(s.ConfigMap.Optional))
				case s.Secret != nil && err == nil:
					err = writeSecretVolume(ctx, src, path, s.Secret.Name, s.Secret.Items, isTrue(s.Secret.Optional))
				case s.DownwardAPI != nil && err == nil:
					err = writeDownwardAPIVolume(pod, path, s.DownwardAPI.Items)
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
	}
	return paths, nil
}

func writeConfigMapVolume(ctx context.Context, src *objectSource, dir, name string, items []corev1.KeyToPath, optional bool) error {
	cm, err := src.configMap(ctx, name)
	if err != nil {
		return err
	}
	if cm == nil {
		if optional {
			return nil
		}
		return fmt.Errorf("configmap %q not found", name)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return writeKeys(dir, data, items, 0o644)
}

func writeSecretVolume(ctx context.Context, src *objectSource, dir, name string, items []corev1.KeyToPath, optional bool) error {
	sec, err := src.secret(ctx, name)
	if err != nil {
		return err
	}
	if sec == nil {
		if optional {
			return nil
		}
		return fmt.Errorf("secret %q not found", name)
	}
	// Secrets are 0600 on disk, whatever the pod's defaultMode says.
	return writeKeys(dir, sec.Data, items, 0o600)
}

func writeKeys(dir string, data map[string][]byte, items []corev1.KeyToPath, mode os.FileMode) error {
	if len(items) == 0 {
		for k := range data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("key %q not found", it.Key)
		}
		if err := writeVolumeFile(dir, it.Path, v, mode); err != nil {
			return err
		}
	}
	return nil
}

func writeDownwardAPIVolume(pod *corev1.Pod, dir string, items []corev1.DownwardAPIVolumeFile) error {
	for _, it := range items {
		if it.FieldRef == nil {
			continue
		}
		var v string
		switch it.FieldRef.FieldPath {
		case "metadata.labels":
			v = formatMap(pod.Labels)
		case "metadata.annotations":
			v = formatMap(pod.Annotations)
		default:
			var err error
			if v, err = podField(pod, it.FieldRef.FieldPath); err != nil {
				return err
			}
		}
		if err := writeVolumeFile(dir, it.Path, []byte(v), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func writeVolumeFile(dir, rel string, data []byte, mode os.FileMode) error {
	path := filepath.Join(dir, rel)
	if !strings.HasPrefix(path, filepath.Clean(dir)+string(filepath.Separator)) {
		return fmt.Errorf("path %q leaves the volume", rel)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, data, mode)
}

func formatMap(m map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(m) {
		fmt.Fprintf(&b, "%s=%q\n", k, m[k])
	}
	return b.String()
}

// mountRoot builds a container's KLOOP_ROOT: for each volume mount, root +
// mountPath is a symlink to the volume's directory (or its subPath).
func mountRoot(root string, c *corev1.Container, volumes map[string]string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	for _, m := range c.VolumeMounts {
		src, ok := volumes[m.Name]
		if !ok {
			return fmt.Errorf("volumeMount %s: no volume %q in the pod", m.MountPath, m.Name)
		}
		if m.SubPath != "" {
			src = filepath.Join(src, m.SubPath)
		}
		dst := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		if err := os.Symlink(src, dst); err != nil {
			return fmt.Errorf("volumeMount %s: %w", m.MountPath, err)
		}
	}
	return nil
}
