// The Argo CD health-check harness of tests/argocd_health.rs: gopher-lua, as Argo CD embeds it.
module scheduled-exports/tests/argocd

go 1.23

require github.com/yuin/gopher-lua v1.1.2
