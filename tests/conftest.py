# tests.realcluster: the session-scoped `real_cluster` fixture (a real kubeadm v1.28.4 control plane).
pytest_plugins = ["tests._figures", "tests.realcluster", "tests.realcluster_ha"]
