using System;
using System.Runtime.InteropServices;
using System.Threading;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TorchHooks.Tests.Autocast
{
    /// <summary>Scopes, nesting, sub-regions, restoration, validation and the cast cache.</summary>
    [TestFixture]
    public class AutocastScopeTests : AutocastTestBase
    {
        [Test]
        public void Outside_any_scope_autocast_is_off_with_pytorchs_default_dtypes()
        {
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);
            Assert.That(Amp.is_autocast_enabled(DeviceType.CUDA), Is.False);
            Assert.That(Amp.get_autocast_dtype(DeviceType.CPU), Is.EqualTo(ScalarType.BFloat16));
            Assert.That(Amp.get_autocast_dtype(DeviceType.CUDA), Is.EqualTo(ScalarType.Float16));
            Assert.That(Amp.is_autocast_cache_enabled(), Is.True);
            Assert.That(LinearDtype(), Is.EqualTo(ScalarType.Float32));
        }

        [Test(Description = "upstream: test_autocast_fast_dtype")]
        public void Default_dtype_is_bfloat16_on_cpu_and_float16_on_cuda()
        {
            using (var cpu = Amp.autocast(DeviceType.CPU))
            {
                Assert.That(cpu.dtype, Is.EqualTo(ScalarType.BFloat16));
                Assert.That(cpu.enabled, Is.True);
                Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.True);
                Assert.That(Amp.is_autocast_enabled(DeviceType.CUDA), Is.False, "a CPU scope leaves CUDA alone");
                Assert.That(LinearDtype(), Is.EqualTo(ScalarType.BFloat16));
            }
            using (var cuda = Amp.autocast(DeviceType.CUDA))
            {
                Assert.That(cuda.dtype, Is.EqualTo(ScalarType.Float16));
                Assert.That(Amp.is_autocast_enabled(DeviceType.CUDA), Is.True);
                Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);
                Assert.That(LinearDtype(), Is.EqualTo(ScalarType.Float32), "CUDA autocast does not touch CPU tensors");
            }
        }

        [Test]
        public void Nested_scopes_restore_the_outer_state_step_by_step()
        {
            Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(0));
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
            {
                Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(1));
                using (var inner = Amp.autocast(DeviceType.CPU, ScalarType.Float16))
                {
                    Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(2));
                    Assert.That(Amp.get_autocast_dtype(DeviceType.CPU), Is.EqualTo(ScalarType.Float16));
                    Assert.That(LinearDtype(), Is.EqualTo(ScalarType.Float16));
                    using (var dflt = Amp.autocast(DeviceType.CPU))
                    {
                        // dtype=null takes the current autocast dtype (PyTorch: get_autocast_dtype), not BFloat16.
                        Assert.That(dflt.dtype, Is.EqualTo(ScalarType.Float16));
                        Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(3));
                    }
                }
                Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(1));
                Assert.That(Amp.get_autocast_dtype(DeviceType.CPU), Is.EqualTo(ScalarType.BFloat16));
                Assert.That(LinearDtype(), Is.EqualTo(ScalarType.BFloat16));
            }
            Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(0));
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);
            Assert.That(LinearDtype(), Is.EqualTo(ScalarType.Float32));
        }

        [Test]
        public void Enabled_false_makes_a_full_precision_sub_region()
        {
            using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
            {
                Assert.That(LinearDtype(), Is.EqualTo(ScalarType.BFloat16));
                using (var off = Amp.autocast(DeviceType.CPU, enabled: false))
                {
                    Assert.That(off.enabled, Is.False);
                    Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);
                    Assert.That(LinearDtype(), Is.EqualTo(ScalarType.Float32));
                    Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(2), "a disabled region still nests, like PyTorch");
                }
                Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.True);
                Assert.That(LinearDtype(), Is.EqualTo(ScalarType.BFloat16));
            }
        }

        [Test]
        public void An_exception_inside_the_scope_restores_the_state()
        {
            Assert.Throws<InvalidOperationException>(() =>
            {
                using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16, cache_enabled: false))
                using (Amp.autocast(DeviceType.CUDA))
                {
                    Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.True);
                    throw new InvalidOperationException("boom");
                }
            });
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);
            Assert.That(Amp.is_autocast_enabled(DeviceType.CUDA), Is.False);
            Assert.That(Amp.is_autocast_cache_enabled(), Is.True);
            Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(0));
            Assert.That(AutocastStack.Depth, Is.EqualTo(0));
        }

        [Test]
        public void A_libtorch_error_inside_the_scope_restores_the_state()
        {
            Assert.That(() =>
            {
                using (Amp.autocast(DeviceType.CPU))
                using (var a = ones(2, 3))
                using (var b = ones(4, 3))
                    F.linear(a, b.T).Dispose(); // shape mismatch: libtorch throws
            }, Throws.InstanceOf<ExternalException>());
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);
            Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(0));
        }

        [TestCase(DeviceType.CPU, ScalarType.Float32)]
        [TestCase(DeviceType.CPU, ScalarType.Float64)]
        [TestCase(DeviceType.CPU, ScalarType.Int32)]
        [TestCase(DeviceType.CUDA, ScalarType.Float32)]
        [TestCase(DeviceType.CUDA, ScalarType.Int64)]
        public void Unsupported_dtypes_are_rejected_naming_dtype_and_the_allowed_values(DeviceType device, ScalarType dtype)
        {
            var e = Assert.Throws<ArgumentException>(() => Amp.autocast(device, dtype))!;
            Assert.That(e.ParamName, Is.EqualTo("dtype"));
            Assert.That(e.Message, Does.Contain("BFloat16").And.Contain("Float16").And.Contain(dtype.ToString()));
            Assert.That(e.Message, Does.Contain("enabled: false"));
            var t = Assert.Throws<ArgumentException>(() => Amp.Enter(device, dtype, true))!;
            Assert.That(t.ParamName, Is.EqualTo("dtype"));
            Assert.That(Amp.is_autocast_enabled(device), Is.False);
            Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(0));
        }

        [Test(Description = "upstream: test_autocast_disabled_with_fp32_dtype")]
        public void A_disabled_region_accepts_float32_and_keeps_the_autocast_dtype()
        {
            using (Amp.autocast(DeviceType.CPU, ScalarType.Float16))
            using (var off = Amp.autocast(DeviceType.CPU, ScalarType.Float32, enabled: false))
            {
                Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);
                Assert.That(off.dtype, Is.EqualTo(ScalarType.Float16), "an unsupported dtype of a disabled region is not set");
                using var a = ones(10);
                Assert.That(a.dtype, Is.EqualTo(ScalarType.Float32));
                Assert.That(LinearDtype(), Is.EqualTo(ScalarType.Float32));
            }
            using (var t = Amp.Enter(DeviceType.CPU, ScalarType.Float64, enabled: false))
                Assert.That(Amp.get_autocast_dtype(DeviceType.CPU), Is.EqualTo(ScalarType.BFloat16));
        }

        [Test]
        public void Float16_is_accepted_on_cpu_and_bfloat16_on_cuda()
        {
            using (var s = Amp.autocast(DeviceType.CPU, ScalarType.Float16))
                Assert.That(s.dtype, Is.EqualTo(ScalarType.Float16));
            using (var s = Amp.autocast(DeviceType.CUDA, ScalarType.BFloat16))
                Assert.That(Amp.get_autocast_dtype(DeviceType.CUDA), Is.EqualTo(ScalarType.BFloat16));
            Assert.That(Amp.get_autocast_dtype(DeviceType.CPU), Is.EqualTo(ScalarType.BFloat16));
            Assert.That(Amp.get_autocast_dtype(DeviceType.CUDA), Is.EqualTo(ScalarType.Float16));
        }

        [Test]
        public void Other_device_types_are_rejected_before_reaching_libtorch()
        {
            var e = Assert.Throws<ArgumentException>(() => Amp.autocast(DeviceType.MPS))!;
            Assert.That(e.ParamName, Is.EqualTo("device_type"));
            Assert.That(e.Message, Does.Contain("DeviceType.CPU").And.Contain("DeviceType.MPS"));
            Assert.That(() => Amp.is_autocast_enabled(DeviceType.META), Throws.ArgumentException);
            Assert.That(() => Amp.get_autocast_dtype(DeviceType.XLA), Throws.ArgumentException);
            Assert.That(() => Amp.Enter(DeviceType.HIP, null, true),
                Throws.ArgumentException.With.Property("ParamName").EqualTo("deviceType"));
        }

        [Test]
        public void Cache_enabled_flag_is_set_inside_and_restored()
        {
            using (var s = Amp.autocast(DeviceType.CPU, cache_enabled: false))
            {
                Assert.That(s.cache_enabled, Is.False);
                Assert.That(Amp.is_autocast_cache_enabled(), Is.False);
                using (var inner = Amp.autocast(DeviceType.CPU))
                    Assert.That(inner.cache_enabled, Is.False, "null keeps the current cache flag");
                Assert.That(Amp.is_autocast_cache_enabled(), Is.False);
            }
            Assert.That(Amp.is_autocast_cache_enabled(), Is.True);
        }

        /// <summary>
        /// libtorch caches the bf16 copy of a float32 leaf that requires grad (a weight) for the whole outermost
        /// region. Changing the weight in place inside the region is therefore not seen by later ops in it; the cache
        /// is cleared when the nesting count returns to 0.
        /// </summary>
        [Test]
        public void The_cast_cache_lives_until_the_outermost_scope_exits()
        {
            using var d = NewDisposeScope();
            var x = ones(1, 4);
            var w = nn.Parameter(full(4, 2, 1.0f));

            double Out() { using var y = matmul(x, w); return y.to_type(float32)[0, 0].item<float>(); }

            using (Amp.autocast(DeviceType.CPU))
            {
                Assert.That(Out(), Is.EqualTo(4.0));
                using (no_grad()) w.add_(1.0);
                Assert.That(Out(), Is.EqualTo(4.0), "the cached bf16 weight is reused in the region");
                using (Amp.autocast(DeviceType.CPU)) { }
                Assert.That(Out(), Is.EqualTo(4.0), "an inner scope exiting (nesting 2 -> 1) keeps the cache");
                using (Amp.autocast(DeviceType.CPU, cache_enabled: false))
                    Assert.That(Out(), Is.EqualTo(8.0), "with the cache off the weight is cast again");
            }
            using (Amp.autocast(DeviceType.CPU))
                Assert.That(Out(), Is.EqualTo(8.0), "the cache was cleared when the outermost scope exited");
        }

        /// <summary>
        /// TorchSharp's linear (and so nn.Linear) calls libtorch's C++ functional linear, which casts
        /// <c>weight.t()</c> — a view, which libtorch never caches. The weight is recast on every call.
        /// </summary>
        [Test]
        public void TorchSharp_linear_does_not_hit_the_cast_cache()
        {
            using var d = NewDisposeScope();
            var x = ones(1, 4);
            var w = nn.Parameter(full(2, 4, 1.0f));
            using (Amp.autocast(DeviceType.CPU))
            {
                Assert.That(F.linear(x, w).to_type(float32)[0, 0].item<float>(), Is.EqualTo(4.0f));
                using (no_grad()) w.add_(1.0);
                Assert.That(F.linear(x, w).to_type(float32)[0, 0].item<float>(), Is.EqualTo(8.0f));
            }
        }

        [Test]
        public void Dispose_is_idempotent_and_IsOpen_tracks_the_region()
        {
            var s = Amp.autocast(DeviceType.CPU);
            Assert.That(s.IsOpen, Is.True);
            s.Dispose();
            Assert.That(s.IsOpen, Is.False);
            s.Dispose();
            Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(0));
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);
        }

        [Test]
        public void Exiting_out_of_order_closes_the_inner_scopes_restores_and_throws()
        {
            var before = new TestAutocastSnapshot();
            var outer = Amp.autocast(DeviceType.CPU, ScalarType.BFloat16);
            var middle = Amp.autocast(DeviceType.CPU, ScalarType.Float16, cache_enabled: false);
            var inner = Amp.autocast(DeviceType.CUDA);
            var e = Assert.Throws<InvalidOperationException>(() => outer.Dispose())!;
            Assert.That(e.Message, Does.Contain("out of order").And.Contain("2 scope(s)"));
            Assert.That(outer.IsOpen || middle.IsOpen || inner.IsOpen, Is.False);
            before.AssertUnchanged();
            Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(0));
            Assert.DoesNotThrow(() => { inner.Dispose(); middle.Dispose(); outer.Dispose(); });
            before.AssertUnchanged();
        }

        [Test]
        public void Exiting_a_middle_scope_out_of_order_keeps_the_outer_one()
        {
            using var outer = Amp.autocast(DeviceType.CPU, ScalarType.BFloat16);
            var middle = Amp.autocast(DeviceType.CPU, ScalarType.Float16);
            var inner = Amp.autocast(DeviceType.CPU, enabled: false);
            Assert.Throws<InvalidOperationException>(() => middle.Dispose());
            Assert.That(outer.IsOpen, Is.True);
            Assert.That(inner.IsOpen, Is.False);
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.True);
            Assert.That(Amp.get_autocast_dtype(DeviceType.CPU), Is.EqualTo(ScalarType.BFloat16));
            Assert.That(AutocastNative.CurrentNesting(), Is.EqualTo(1));
        }

        [Test]
        public void Disposing_on_another_thread_throws_and_leaves_both_threads_alone()
        {
            var scope = Amp.autocast(DeviceType.CPU);
            Exception? error = null;
            bool otherEnabled = true;
            var t = new Thread(() =>
            {
                try { scope.Dispose(); } catch (Exception e) { error = e; }
                otherEnabled = Amp.is_autocast_enabled(DeviceType.CPU);
            });
            t.Start();
            t.Join();
            Assert.That(error, Is.InstanceOf<InvalidOperationException>());
            Assert.That(error!.Message, Does.Contain("thread-local").And.Contain("await"));
            Assert.That(otherEnabled, Is.False);
            Assert.That(scope.IsOpen, Is.True);
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.True, "the entering thread is still under autocast");
            scope.Dispose();
            Assert.That(Amp.is_autocast_enabled(DeviceType.CPU), Is.False);
        }

        [Test]
        public void Scope_reports_its_settings()
        {
            using var s = Amp.autocast(DeviceType.CPU, ScalarType.Float16, enabled: true, cache_enabled: false);
            Assert.That(s.device_type, Is.EqualTo(DeviceType.CPU));
            Assert.That(s.ToString(), Is.EqualTo("autocast(device_type=CPU, dtype=Float16, enabled=True, cache_enabled=False)"));
        }

        [Test]
        public void A_missing_export_is_a_NotSupportedException_naming_the_symbol_and_the_expected_libtorch()
        {
            AutocastNative.EnsureBound();
            var missing = NativeSymbol.Cpp(NativeLibraryId.TorchCpu, "void at::autocast::no_such_function()",
                "_ZN2at8autocast16no_such_functionEv", "?no_such_function@autocast@at@@YAXXZ");
            var e = Assert.Throws<NotSupportedException>(() =>
                AutocastNative.Resolve(AutocastNative.TorchCpuHandle, missing, windows: false))!;
            Assert.That(e.Message, Does.Contain("_ZN2at8autocast16no_such_functionEv").And.Contain("2.10.0").And.Contain("0.107.0")
                .And.Contain(NativeSymbol.FileName(NativeLibraryId.TorchCpu)));
            var w = Assert.Throws<NotSupportedException>(() =>
                AutocastNative.Resolve(AutocastNative.TorchCpuHandle, missing, windows: true))!;
            Assert.That(w.Message, Does.Contain("?no_such_function@autocast@at@@YAXXZ"));
            Assert.That(AutocastNative.Resolve(AutocastNative.TorchCpuHandle, AutocastNative.SetEnabled, windows: false), Is.Not.EqualTo(IntPtr.Zero));
        }
    }
}
