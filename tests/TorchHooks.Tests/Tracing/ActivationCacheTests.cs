using System;
using System.Linq;
using System.Runtime.CompilerServices;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Tracing
{
    /// <summary>run_with_cache: filters, ownership independent of DisposeScope, budget, disposal, no model↔cache cycle.</summary>
    public class ActivationCacheTests
    {
        [Test(Description = "TransformerLens run_with_cache on TorchVision resnet18: the cached tensors outlive ResNet's own DisposeScope and match a direct recomputation")]
        public void ResNet18CacheOwnsItsTensors()
        {
            using var raw = torchvision.models.resnet18();
            raw.eval();
            var model = raw.WithHooks();
            using var x = randn(1, 3, 64, 64);
            Tensor output;
            ActivationCache cache;
            using (var scope = NewDisposeScope())
            {
                (output, cache) = model.RunWithCache(x, new CacheOptions { Paths = new[] { "conv1", "bn1", "layer1.0.conv1", "layer4.1.conv2" } });
                output.DetachFromDisposeScope();
            }
            using (output)
            using (cache)
            {
                Assert.That(cache.IsCapturing, Is.False);
                Assert.That(cache.Keys, Is.EqualTo(new[] { "conv1", "bn1", "layer1.0.conv1", "layer4.1.conv2" }));
                Assert.That(cache["layer1.0.conv1"].shape, Is.EqualTo(new long[] { 1, 64, 16, 16 }));
                Assert.That(cache["layer4.1.conv2"].shape, Is.EqualTo(new long[] { 1, 512, 2, 2 }));
                Assert.That(cache.Entries.All(e => !e.Tensor.IsInvalid && !e.Tensor.requires_grad));
                using (no_grad())
                using (var direct = ((Conv2d)model["conv1"].Module).call(x))
                    Assert.That(cache["conv1"].allclose(direct), Is.True);
                // A copy: the in-place ReLU that follows bn1 did not rewrite the cached bn1 output.
                Assert.That(cache["bn1"].min().item<float>(), Is.LessThan(0f));
                Assert.That(cache.Bytes, Is.EqualTo(cache.Entries.Sum(e => e.Tensor.numel() * 4)));
            }
            Assert.Throws<ObjectDisposedException>(() => _ = cache["conv1"]);
        }

        [Test(Description = "Filters by path prefix, type and predicate; inputs and outputs; repeated calls keyed #k; device move")]
        public void FiltersAndKeys()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(2, 3);
            var (y, cache) = model.RunWithCache(x, new CacheOptions { Types = new[] { typeof(Linear) }, Inputs = true, Device = CPU });
            using (y) using (cache)
            {
                Assert.That(cache.Keys, Is.EqualTo(new[] { "body.lin:input", "body.lin", "shared:input", "shared", "shared:input#1", "shared#1", "head:input", "head" }));
                Assert.That(cache["shared:input#1"].allclose(cache["shared"]), Is.True, "the second call's input is the first call's output");
                Assert.That(cache["head"].allclose(y), Is.True);
                Assert.That(cache.Of("shared").Select(e => (e.Kind, e.CallIndex)), Is.EqualTo(new[] { (ActivationKind.Input, 0), (ActivationKind.Output, 0), (ActivationKind.Input, 1), (ActivationKind.Output, 1) }));
                var e = Assert.Throws<System.Collections.Generic.KeyNotFoundException>(() => _ = cache["body.relu"]);
                Assert.That(e!.Message, Does.Contain("body.relu"));
            }
            using (var byPrefix = model.CacheActivations(new CacheOptions { Paths = new[] { "body.*" }, Filter = p => p.Module is ReLU }))
            {
                using var y2 = model.call(x);
                Assert.That(byPrefix.Keys, Is.EqualTo(new[] { "body.relu" }));
            }
            var bad = Assert.Throws<ArgumentException>(() => model.CacheActivations(new CacheOptions { Paths = new[] { "body.lni" } }));
            Assert.That(bad!.Message, Does.Contain("'body.lin'"));
            Assert.That(TracingConcern.ObserverCount, Is.EqualTo(0));
        }

        [Test(Description = "Not detached on request: the cached tensor stays in the autograd graph")]
        public void NotDetached()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(2, 3);
            var (y, cache) = model.RunWithCache(x, new CacheOptions { Paths = new[] { "body.lin" }, Detach = false });
            using (y) using (cache)
                Assert.That(cache["body.lin"].requires_grad, Is.True);
        }

        [Test(Description = "A byte budget: exceeding it stops the call with a clear error naming the key, the budget and the fix; nothing stays registered")]
        public void ByteBudget()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(10, 3);
            // body.lin output is 10x4 float = 160 bytes; budget 200 fits one.
            var e = Assert.Throws<InvalidOperationException>(() => model.RunWithCache(x, new CacheOptions { MaxBytes = 200 }));
            Assert.That(e!.Message, Does.Contain("MaxBytes = 200").And.Contain("Narrow CacheOptions"));
            Assert.That(TracingConcern.ObserverCount, Is.EqualTo(0));
            Assert.That(CallStack.HasFrames, Is.False, "the call path was unwound");
            using var y = model.call(x);   // the model still works
        }

        [Test(Description = "No model<->cache cycle (TransformerLens#290): a stopped cache keeps no model alive, and the model keeps no cache alive")]
        public void NoReferenceCycle()
        {
            var (modelRef, cacheRef, cache) = Run();
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            Assert.That(modelRef.IsAlive, Is.False, "the cache must not keep the model alive");
            Assert.That(cache.Count, Is.GreaterThan(0));
            cache.Dispose();

            var (model, weakCache) = RunKeepModel();
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            Assert.That(weakCache.IsAlive, Is.False, "the model must not keep the cache alive");
            GC.KeepAlive(model);
            _ = cacheRef;
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private static (WeakReference, WeakReference, ActivationCache) Run()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(2, 3);
            var (y, cache) = model.RunWithCache(x);
            y.Dispose();
            return (new WeakReference(model.Unwrap()), new WeakReference(cache), cache);
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private static (object, WeakReference) RunKeepModel()
        {
            var model = new TraceNet().WithHooks();
            using var x = randn(2, 3);
            var (y, cache) = model.RunWithCache(x);
            y.Dispose();
            var weak = new WeakReference(cache);
            // Not disposed: dropped. Its tensors are freed by their finalizers.
            return (model, weak);
        }
    }
}
