using System;
using System.Collections.Generic;
using System.Threading;
using NUnit.Framework;
using TorchHooks.Tests.Autocast;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Reliability
{
    /// <summary>
    /// Misuse, one row per case: what the user does, the exception type, and the exact message. Every message
    /// says what happened and what to do instead.
    /// </summary>
    [TestFixture]
    public class MisuseTable
    {
        [SetUp]
        public void Clean() { ModuleHooks.RemoveAll(); ThreadCallState.Reset(); }

        [TearDown]
        public void LeaveClean() { ModuleHooks.RemoveAll(); ThreadCallState.Reset(); AutocastTestState.AssertClean("after the case"); }

        private static HookedModule<Tensor, Tensor> Model() => nn.Sequential(("enc", nn.Linear(2, 2)), ("dec", nn.Linear(2, 2))).WithHooks();

        public static IEnumerable<TestCaseData> Cases()
        {
            TestCaseData Row(string name, Type type, string message, Action act) => new TestCaseData(act, type, message).SetArgDisplayNames(name);

            yield return Row("WithHooks(null)", typeof(ArgumentNullException),
                "Pass the TorchSharp module to wrap. (Parameter 'model')",
                () => ModuleExtensions.WithHooks((nn.Module<Tensor, Tensor>)null!));
            yield return Row("unknown path", typeof(KeyNotFoundException),
                "No module at path 'encc'. Nearest valid paths: 'enc', 'dec', ''. (All paths: named_modules() names; the root is \"\".)",
                () => _ = Model()["encc"]);
            yield return Row("null hook", typeof(ArgumentNullException),
                "Pass a hook delegate, e.g. (m, x) => null. (Parameter 'hook')",
                () => Model()["enc"].register_forward_hook(null!));
            yield return Row("hook of the wrong signature", typeof(ArgumentException),
                "The forward hook (register_forward_hook<Tensor, (Tensor, Tensor)>, for Tensor → (Tensor, Tensor)) does not fit module 'enc' (Linear), which is a Module<Tensor, Tensor>. Register a hook of that signature: get the module's typed hook point with m.At(module) (the lambda then takes its types from the module), or give explicit type arguments matching Module<Tensor, Tensor>. (Parameter 'hook')",
                () => Model()["enc"].register_forward_hook<Tensor, (Tensor, Tensor)>((mod, x, y) => null));
            yield return Row("null precision policy", typeof(ArgumentNullException),
                "Pass PrecisionPolicy.Autocast(...) or PrecisionPolicy.Float32(); remove the returned handle to clear it. (Parameter 'policy')",
                () => Model()["enc"].SetPrecision(null!));
            yield return Row("autocast on an unsupported device", typeof(ArgumentException),
                "Autocast supports device_type DeviceType.CPU and DeviceType.CUDA, not DeviceType.MPS. (Parameter 'device_type')",
                () => Amp.autocast(DeviceType.MPS));
            yield return Row("autocast to float32", typeof(ArgumentException),
                "Autocast dtype ScalarType.Float32 is not supported on DeviceType.CPU. Allowed: ScalarType.BFloat16, ScalarType.Float16 (default ScalarType.BFloat16). To run a region in full precision use enabled: false. (Parameter 'dtype')",
                () => Amp.autocast(DeviceType.CPU, ScalarType.Float32));
            yield return Row("ModuleCallInfo.Current outside a call", typeof(InvalidOperationException),
                "ModuleCallInfo.Current is read inside a hook (or the forward of a module with hooks); no hooked module call is under way on this thread. Use ModuleCallInfo.CurrentOrNull where there may be none.",
                () => _ = ModuleCallInfo.Current);
            yield return Row("ModuleCallInfo.Current?.Path outside a call (compiles: a class)", typeof(InvalidOperationException),
                "ModuleCallInfo.Current is read inside a hook (or the forward of a module with hooks); no hooked module call is under way on this thread. Use ModuleCallInfo.CurrentOrNull where there may be none.",
                () => _ = ModuleCallInfo.Current?.Path);
            yield return Row("hooking a ModuleList (children listed, not grandchildren)", typeof(ArgumentException),
                "Module 'blocks' (ModuleList<Module<Tensor, Tensor>>) has no forward, so hooks on it would never fire (as in PyTorch, where they silently don't). Hook its children instead: 'blocks.0', 'blocks.1'. (Parameter 'path')",
                () => _ = new Blocks().WithHooks()["blocks"]);
            yield return Row("hook on a disposed facade", typeof(ObjectDisposedException),
                "This facade of a Sequential was disposed. Disposing a facade leaves the model, its parameters and its hooks alone; call the model itself, or model.WithHooks() for a new facade.\nObject name: 'HookedModule(Sequential)'.",
                () => { var m = Model(); m.Dispose(); m["enc"].register_forward_hook((mod, x, y) => null); });
            yield return Row("call through a disposed facade", typeof(ObjectDisposedException),
                "This facade of a Sequential was disposed. Disposing a facade leaves the model, its parameters and its hooks alone; call the model itself, or model.WithHooks() for a new facade.\nObject name: 'HookedModule(Sequential)'.",
                () => { var m = Model(); m.Dispose(); using var x = ones(1, 2); m.call(x); });
            yield return Row("call through a facade of a disposed model", typeof(ObjectDisposedException),
                "The facade's model cannot be called: the Linear was disposed (its parameters and native module are gone). Use a live model (disposing a facade never disposes its model). Object name: 'Linear'.",
                () => { var model = nn.Linear(2, 2); var m = model.WithHooks(); model.Dispose(); using var x = ones(1, 2); m.call(x); });
            yield return Row("WithHooks() on a disposed model", typeof(ObjectDisposedException),
                "WithHooks() needs a live model: the Linear was disposed (its parameters and native module are gone). Use a live model (disposing a facade never disposes its model).\nObject name: 'Linear'.",
                () => { var model = nn.Linear(2, 2); model.Dispose(); model.WithHooks(); });
            yield return Row("hook returns a disposed tensor", typeof(ObjectDisposedException),
                "The forward hook #0 of module 'enc' (Linear) returned a disposed tensor as the module's output. Return a live tensor (a new result, or x.alias()); a tensor in a 'using' inside the hook is disposed when the hook returns.\nObject name: 'Tensor'.",
                () => { var m = Model(); m["enc"].register_forward_hook((mod, x, y) => { var z = y.alias(); z.Dispose(); return z; }); using var x = ones(1, 2); m.call(x); });
            yield return Row("pre-hook returns a disposed tensor", typeof(ObjectDisposedException),
                "The forward pre-hook #0 of module 'dec' (Linear) returned a disposed tensor as the module's input. Return a live tensor (a new result, or x.alias()); a tensor in a 'using' inside the hook is disposed when the hook returns.\nObject name: 'Tensor'.",
                () => { var m = Model(); m["dec"].register_forward_pre_hook((mod, x) => { var z = x.alias(); z.Dispose(); return z; }); using var x = ones(1, 2); m.call(x); });
            yield return Row("hook's replacement breaks the next layer", typeof(InvalidOperationException),
                "libtorch rejected a value after a hook replaced one: the forward hook #0 of module 'enc' (Linear) returned a Float32 tensor of shape [1, 5] as the module's output, and the model then failed with: mat1 and mat2 shapes cannot be multiplied (1x5 and 2x2). Check that the hook's replacement has the shape, dtype and device the next layer expects.",
                () => { var m = Model(); m["enc"].register_forward_hook((mod, x, y) => zeros(1, 5)); using var x = ones(1, 2); m.call(x); });
            yield return Row("unbounded recursion from a hook", typeof(InvalidOperationException),
                $"Module 'enc' (Linear) was called 1000 hooked calls deep on this thread, the limit (ThreadCallState.MaxCallDepth = 1000). A hook or forward that calls the model again needs a bound (e.g. a flag that skips the nested call); unbounded, it would overflow the stack and end the process.",
                () => OnBigStack(() => { var m = Model(); m["enc"].register_forward_pre_hook((mod, x) => { using (m.call(x)) { } return null; }); using var x = ones(1, 2); m.call(x); }));
            yield return Row("autocast scope disposed on another thread", typeof(InvalidOperationException),
                "An autocast scope entered on managed thread {T1} is being exited on thread {T2}. libtorch's autocast state is thread-local, so the scope can only be exited on the thread that entered it; its thread still runs under it. Do not 'await' inside an autocast scope (the continuation may resume on another thread); open the scope around synchronous code, or carry the state with AutocastState.Capture() and Apply()/Run() on the worker thread.",
                () => { var scope = Amp.autocast(DeviceType.CPU); try { OnBigStack(scope.Dispose); } finally { scope.Dispose(); } });
            yield return Row("GradScaler.step without gradients", typeof(InvalidOperationException),
                "No inf checks were recorded for this optimizer. None of its parameters has a gradient: call scaler.scale(loss).backward() before step(optimizer), and check that the optimizer holds the model's parameters.",
                () => { using var p = new Parameter(ones(2)); var opt = optim.SGD(new[] { p }, 0.1); var s = new GradScaler(); using (var l = ones(1)) using (s.scale(l)) { } s.step(opt); });
            yield return Row("GradScaler.update without step", typeof(InvalidOperationException),
                "No inf checks were recorded prior to update(). Call step(optimizer) (or unscale_(optimizer)) after backward and before update().",
                () => { var s = new GradScaler(); using (var l = ones(1)) using (s.scale(l)) { } s.update(); });
            yield return Row("GradScaler.unscale_ with float16 gradients", typeof(InvalidOperationException),
                "Attempting to unscale FP16 gradients. Keep the parameters in float32 (autocast casts them to float16 per op) so that their gradients are float32. No gradient was unscaled.",
                () => { using var p = new Parameter(ones(2, dtype: float16)); p.grad = ones(2, dtype: float16); var opt = optim.SGD(new[] { p }, 0.1); var s = new GradScaler(); using (var l = ones(1)) using (s.scale(l)) { } s.unscale_(opt); });
        }

        /// <summary>A ModuleList whose first entry has children of its own (which the message must not list).</summary>
        private sealed class Blocks : nn.Module<Tensor, Tensor>
        {
            private readonly ModuleList<nn.Module<Tensor, Tensor>> blocks = new(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Linear(2, 2));
            public Blocks() : base(nameof(Blocks)) { RegisterComponents(); }
            public override Tensor forward(Tensor x) => blocks[1].call(blocks[0].call(x));
        }

        /// <summary>Runs on a fresh thread with a large stack; rethrows its exception here.</summary>
        private static void OnBigStack(Action act)
        {
            Exception? error = null;
            var t = new Thread(() => { try { act(); } catch (Exception e) { error = e; } }, 64 * 1024 * 1024);
            t.Start(); t.Join();
            if (error is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error).Throw();
        }

        [TestCaseSource(nameof(Cases))]
        public void Misuse_gets_the_exact_message(Action act, Type type, string message)
        {
            var e = Assert.Catch(() => act())!;
            Assert.That(e, Is.InstanceOf(type), e.ToString());
            var actual = System.Text.RegularExpressions.Regex.Replace(e.Message, @"managed thread \d+ is being exited on thread \d+", "managed thread {T1} is being exited on thread {T2}");
            Assert.That(actual, Is.EqualTo(message));
        }
    }
}
