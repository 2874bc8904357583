using System;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Snapshots
{
    /// <summary>
    /// fc1 → act → [probe] → [extra] → fc2, with fixed weights (no random state), so that each test can build
    /// the model of the snapshot and a variant with one planted change.
    /// </summary>
    public sealed class SnapMlp : nn.Module<Tensor, Tensor>
    {
        private readonly Linear fc1;
        private readonly nn.Module<Tensor, Tensor> act;
        private readonly nn.Module<Tensor, Tensor>? probe;
        private readonly Linear? extra;
        private readonly Linear fc2;

        public SnapMlp(int hidden = 8, string activation = "relu", bool extraLayer = false, bool probeModule = false, ScalarType fc2Dtype = ScalarType.Float32)
            : base(nameof(SnapMlp))
        {
            fc1 = nn.Linear(4, hidden);
            act = activation == "relu" ? nn.ReLU() : nn.GELU();
            register_module("fc1", fc1);
            register_module("act", act);
            if (probeModule) register_module("probe", probe = nn.Identity());
            if (extraLayer) register_module("extra", extra = nn.Linear(hidden, hidden));
            fc2 = nn.Linear(hidden, 2, dtype: fc2Dtype);
            register_module("fc2", fc2);
            using var _ = no_grad();
            int k = 0;
            foreach (var (_, p) in named_parameters())
            {
                using var values = (sin(arange(p.numel(), dtype: float64) * 0.37 + k) * 0.5).reshape(p.shape).to(p.dtype);
                p.copy_(values);
                k++;
            }
        }

        public Linear Fc2 => fc2;

        public override Tensor forward(Tensor x)
        {
            using var h = fc1.call(x);
            using var a = act.call(h);
            using var p = probe is null ? a.alias() : probe.call(a);
            using var e = extra is null ? p.alias() : extra.call(p);
            using var c = e.to(fc2.weight!.dtype);
            return fc2.call(c);
        }

        /// <summary>A fixed input: 4 rows of 4 features.</summary>
        public static Tensor Input() => cos(arange(16, dtype: float32) * 0.7).reshape(4, 4);

        /// <summary>Multiplies every parameter by (1 + relative) in place.</summary>
        public SnapMlp Perturb(double relative)
        {
            using var _ = no_grad();
            foreach (var p in parameters()) p.mul_(1 + relative);
            return this;
        }
    }
}
