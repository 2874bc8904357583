using System;
using System.Collections.Generic;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Precision
{
    /// <summary>Per-module precision on the facade: an autocast region around one module's forward.</summary>
    [TestFixture]
    public class PrecisionPolicyTests
    {
        private static nn.Module<Tensor, Tensor> Model() =>
            nn.Sequential(("fc1", nn.Linear(8, 8)), ("norm", nn.LayerNorm(8)), ("fc2", nn.Linear(8, 4)));

        private static Dictionary<string, ScalarType> OutputDtypes(HookedModule<Tensor, Tensor> m, Tensor x, out HookScope scope)
        {
            var dtypes = new Dictionary<string, ScalarType>();
            scope = new HookScope();
            foreach (var p in new[] { "fc1", "norm", "fc2" })
            {
                var path = p;
                scope.Add(m[path].register_forward_hook((mod, i, y) => { dtypes[path] = y.dtype; return null; }));
            }
            using (var y = m.call(x)) dtypes[""] = y.dtype;
            return dtypes;
        }

        [Test]
        public void AutocastPolicyOnOneModuleChangesOnlyThatModule()
        {
            var m = Model().WithHooks();
            // On the last layer: like PyTorch's decorator form, a bf16 output fed to a float32 layer outside
            // any region would be a dtype mismatch, so a lone region goes where its output is consumed.
            using var policy = m["fc2"].SetPrecision(PrecisionPolicy.Autocast(DeviceType.CPU, ScalarType.BFloat16));
            using var x = randn(2, 8);
            var dtypes = OutputDtypes(m, x, out var scope);
            scope.Dispose();
            Assert.That(dtypes["fc1"], Is.EqualTo(ScalarType.Float32), "fc1 has no policy and no outer region");
            Assert.That(dtypes["norm"], Is.EqualTo(ScalarType.Float32));
            Assert.That(dtypes["fc2"], Is.EqualTo(ScalarType.BFloat16), "fc2 ran under its bf16 region");
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False, "the region closed");
        }

        [Test]
        public void Float32PolicyInsideAnAutocastRegionCastsInputsAndComputesInFloat32()
        {
            var m = Model().WithHooks();
            using var policy = m["norm"].SetPrecision(PrecisionPolicy.Float32());
            using var x = randn(2, 8);
            Dictionary<string, ScalarType> dtypes;
            HookScope scope;
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
                dtypes = OutputDtypes(m, x, out scope);
            scope.Dispose();
            Assert.That(dtypes["fc1"], Is.EqualTo(ScalarType.BFloat16));
            Assert.That(dtypes["norm"], Is.EqualTo(ScalarType.Float32), "norm got float32 inputs and autocast off");
            Assert.That(dtypes["fc2"], Is.EqualTo(ScalarType.BFloat16), "the outer region applies again after norm");
        }

        [Test]
        public void ForwardHooksOfAFloat32ModuleSeeTheInputBeforeTheCast()
        {
            var m = Model().WithHooks();
            using var policy = m["norm"].SetPrecision(PrecisionPolicy.Float32());
            var seen = new List<string>();
            using var local = m["norm"].register_forward_hook((mod, input, y) => { seen.Add($"local {input.dtype} -> {y.dtype}"); return null; });
            using var global = ModuleHooks.register_module_forward_hook((mod, input, y) =>
            {
                if (ReferenceEquals(mod, m["norm"].Module)) seen.Add($"global {input.dtype} -> {y.dtype}");
                return null;
            });
            using var x = randn(2, 8);
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
            using (var y = m.call(x)) { }
            // The float32 copy made for forward is disposed when the region closes; the hooks get the
            // (still valid) bfloat16 input the caller passed, as with a decorator that casts inside forward.
            Assert.That(seen, Is.EqualTo(new[] { "global BFloat16 -> Float32", "local BFloat16 -> Float32" }));
        }

        [Test]
        public void AFloat16PolicyInsideABFloat16RegionDoesNotReuseBFloat16CachedCasts()
        {
            // The same Linear runs in the outer bf16 region (its weight cast is cached) and then inside a
            // module with a Float16 policy; libtorch's cache is keyed by tensor only.
            var shared = nn.Linear(8, 8);
            var m = new SharedTwice(shared).WithHooks();
            using var policy = m["inner"].SetPrecision(PrecisionPolicy.Autocast(DeviceType.CPU, ScalarType.Float16));
            using var x = randn(2, 8);
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
            using (var y = m.call(x))
                Assert.That(y.dtype, Is.EqualTo(ScalarType.Float16), "the inner module computed in float16 with fresh casts");
        }

        private sealed class SharedTwice : nn.Module<Tensor, Tensor>
        {
            private readonly nn.Module<Tensor, Tensor> outer;
            private readonly nn.Module<Tensor, Tensor> inner;
            public SharedTwice(nn.Module<Tensor, Tensor> shared) : base("SharedTwice")
            {
                outer = shared;
                inner = nn.Sequential(("lin", shared));
                RegisterComponents();
            }
            public override Tensor forward(Tensor x)
            {
                using var h = outer.call(x);
                using var f = h.to(ScalarType.Float32);
                return inner.call(f);
            }
        }

        [Test]
        public void HooksRunOutsideTheRegion()
        {
            var probe = new Probe();
            var m = nn.Sequential(("probe", probe)).WithHooks();
            var seen = new List<string>();
            using var policy = m["probe"].SetPrecision(PrecisionPolicy.Autocast());
            using var pre = m["probe"].register_forward_pre_hook((mod, x) => { seen.Add($"pre:{Amp.is_autocast_enabled(DeviceType.CPU)}"); return null; });
            using var fwd = m["probe"].register_forward_hook((mod, x, y) => { seen.Add($"fwd:{Amp.is_autocast_enabled(DeviceType.CPU)}"); return null; });
            probe.Seen = seen;
            using (m.call(ones(1))) { }
            Assert.That(seen, Is.EqualTo(new[] { "pre:False", "forward:True", "fwd:False" }));
        }

        private sealed class Probe : nn.Module<Tensor, Tensor>
        {
            public List<string>? Seen;
            public Probe() : base("Probe") { }
            public override Tensor forward(Tensor x) { Seen?.Add($"forward:{Amp.is_autocast_enabled(DeviceType.CPU)}"); return x.alias(); }
        }

        [Test]
        public void StateIsRestoredWhenForwardThrows()
        {
            var m = nn.Sequential(("bad", new Failing())).WithHooks();
            using var policy = m["bad"].SetPrecision(PrecisionPolicy.Autocast());
            using var x = ones(1);
            Assert.Throws<InvalidOperationException>(() => m.call(x));
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);
            Assert.That(CallStack.Current.Count, Is.Zero);
        }

        [Test]
        public void RemovingTheHandleClearsThePolicy()
        {
            var m = Model().WithHooks();
            var handle = m["fc1"].SetPrecision(PrecisionPolicy.Autocast());
            Assert.That(m["fc1"].Precision, Is.Not.Null);
            handle.remove();
            Assert.That(m["fc1"].Precision, Is.Null);
            using var x = randn(2, 8);
            var dtypes = OutputDtypes(m, x, out var scope);
            scope.Dispose();
            Assert.That(dtypes["fc1"], Is.EqualTo(ScalarType.Float32));
        }

        [Test]
        public void ANewerPolicyIsNotClearedByAnOlderHandle()
        {
            var m = Model().WithHooks();
            var old = m["fc1"].SetPrecision(PrecisionPolicy.Autocast());
            using var newer = m["fc1"].SetPrecision(PrecisionPolicy.Float32());
            old.remove();
            Assert.That(m["fc1"].Precision!.enabled, Is.False, "the Float32 policy set later stays");
        }

        [Test]
        public void BadPoliciesAreRejectedWithTheArgumentName()
        {
            var e = Assert.Throws<ArgumentException>(() => PrecisionPolicy.Autocast(DeviceType.CPU, ScalarType.Float64));
            Assert.That(e!.ParamName, Is.EqualTo("dtype"));
            Assert.Throws<ArgumentNullException>(() => nn.Linear(1, 1).WithHooks().Root.SetPrecision(null!));
        }

        [Test]
        public void CastInputsAreDisposed()
        {
            var m = Model().WithHooks();
            using var policy = m["norm"].SetPrecision(PrecisionPolicy.Float32());
            using var x = randn(2, 8);
            void Run(int n)
            {
                for (int i = 0; i < n; i++)
                    using (Amp.autocast(DeviceType.CPU))
                    using (var y = m.call(x)) { }
            }
            Run(5);
            long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            Run(100);
            Assert.That(DisposeScopeManager.Statistics.ThreadTotalLiveCount - before, Is.LessThanOrEqualTo(0));
        }
    }
}
