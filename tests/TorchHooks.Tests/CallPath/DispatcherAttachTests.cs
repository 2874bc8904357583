using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using TorchHooks;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.CallPath
{
    /// <summary>
    /// "Nothing registered, nothing paid" (issue 12): wrapping puts no hook into TorchSharp's dictionaries; the
    /// dispatchers go on every module of a tree when something is registered on one of its modules, on every wrapped
    /// module while something is active everywhere, copy-on-write so that calls under way on other threads are safe.
    /// </summary>
    [NonParallelizable]
    public class DispatcherAttachTests
    {
        // A slow TorchSharp hook of the user's own: calls on other threads spend most of their time enumerating its dictionary.
        private static readonly Func<nn.Module<Tensor, Tensor>, Tensor, Tensor> s_userPre = (m, x) => { Thread.SpinWait(20_000); return x; };

        /// <summary>The keys of TorchSharp's typed pre-hook dictionary of a module.</summary>
        private static string[] PreHookKeys(nn.Module module) => HookKeys(module, "pre_hooks");

        private static string[] HookKeys(nn.Module module, string field)
        {
            for (var t = module.GetType(); t is not null; t = t.BaseType)
                if (t.GetField(field, BindingFlags.Instance | BindingFlags.NonPublic) is { } f)
                    return ((IDictionary)f.GetValue(module)!).Keys.Cast<string>().ToArray();
            throw new InvalidOperationException($"no {field}");
        }

        private static bool Attached(nn.Module module)
            => PreHookKeys(module).Contains(HookDictionaries.Key) && HookKeys(module, "post_hooks").Contains(HookDictionaries.Key);

        private static nn.Module<Tensor, Tensor> Mlp() => nn.Sequential(("fc1", nn.Linear(4, 8)), ("act", nn.ReLU()), ("fc2", nn.Linear(8, 2)));

        [Test(Description = "WithHooks() puts nothing into TorchSharp's hook dictionaries: a wrapped model with nothing registered runs as TorchSharp's")]
        public void WrappingAttachesNothing()
        {
            var model = Mlp();
            var m = model.WithHooks();
            Assert.That(model.modules().Prepend(model).All(x => PreHookKeys(x).Length == 0), Is.True);
            using var x = randn(3, 4);
            using var a = model.call(x);
            using var b = m.call(x);
            Assert.That(a.allclose(b), Is.True);
            Assert.That(m["fc1"].IsAttached, Is.False);
        }

        [Test(Description = "The first hook on one module attaches the dispatchers to every module of its tree, not to other trees")]
        public void FirstHookArmsItsTreeOnly()
        {
            var model = Mlp();
            var other = Mlp();
            var m = model.WithHooks();
            var o = other.WithHooks();
            var calls = new List<string>();
            using var h = m["fc2"].register_forward_hook((mod, x, y) => { calls.Add("fc2"); return null; });
            Assert.That(model.modules().Prepend(model).All(Attached), Is.True, "every module of the tree");
            Assert.That(other.modules().Prepend(other).Any(Attached), Is.False, "another tree stays bare");
            using var x = randn(3, 4);
            using var y = model.call(x);      // the raw model: hooks live with the module
            Assert.That(calls, Is.EqualTo(new[] { "fc2" }));
            Assert.That(o.Root.IsAttached, Is.False);
        }

        [Test(Description = "While a global hook exists every wrapped module has the dispatchers, also models wrapped meanwhile; after it is removed new models start bare")]
        public void GlobalHookArmsEverything()
        {
            var before = Mlp();
            before.WithHooks();
            int fired = 0;
            nn.Module<Tensor, Tensor> during;
            using (ModuleHooks.register_module_forward_hook((mod, x, y) => { fired++; return null; }))
            {
                Assert.That(before.modules().Prepend(before).All(Attached), Is.True);
                during = Mlp();
                during.WithHooks();
                Assert.That(during.modules().Prepend(during).All(Attached), Is.True);
                using var x = randn(1, 4);
                using var y = during.call(x);
                Assert.That(fired, Is.EqualTo(4), "Sequential + 3 children");
            }
            var after = Mlp();
            after.WithHooks();
            Assert.That(after.modules().Prepend(after).Any(Attached), Is.False);
        }

        [Test(Description = "A hook registered during a forward on a module called later in that forward fires in the same forward (as in PyTorch)")]
        public void HookAddedMidForwardFiresOnLaterModules()
        {
            var model = Mlp();
            var m = model.WithHooks();
            var seen = new List<string>();
            RemovableHandle? late = null;
            m["fc1"].register_forward_hook((mod, x, y) =>
            {
                late ??= m["fc2"].register_forward_hook((mod2, x2, y2) => { seen.Add("fc2"); return null; });
                seen.Add("fc1");
                return null;
            });
            using var x = randn(2, 4);
            using var y = m.call(x);
            Assert.That(seen, Is.EqualTo(new[] { "fc1", "fc2" }));
        }

        [Test(Description = "A module's own TorchSharp hooks, registered before the dispatchers came, keep running after them and can still be removed")]
        public void UsersOwnTorchSharpHooksSurviveAttaching()
        {
            var model = Mlp();
            var fc1 = (nn.Module<Tensor, Tensor>)model.named_children().First().module;
            int own = 0;
            var remover = fc1.register_forward_pre_hook((mod, x) => { own++; return x; });
            var m = model.WithHooks();
            int ours = 0;
            using var h = m["fc1"].register_forward_pre_hook((mod, x) => { ours++; return null; });
            Assert.That(PreHookKeys(fc1)[0], Is.EqualTo(HookDictionaries.Key), "the dispatcher first");
            using (var x = randn(1, 4)) using (var y = model.call(x)) { }
            Assert.That((own, ours), Is.EqualTo((1, 1)));
            remover.remove();
            using (var x = randn(1, 4)) using (var y = model.call(x)) { }
            Assert.That((own, ours), Is.EqualTo((1, 2)));
        }

        [Test(Description = "Arming a tree while other threads call the raw model and the facade: no call fails, and every call after the hook was added runs it")]
        public void ArmingWhileOtherThreadsCallIsSafe()
        {
            for (int round = 0; round < 20; round++)
            {
                var model = Mlp();
                var m = model.WithHooks();
                var own = (nn.Module<Tensor, Tensor>)model.named_children().First().module;
                own.register_forward_pre_hook(s_userPre);   // a non-empty dictionary being enumerated while it is replaced
                using var stop = new CancellationTokenSource();
                var errors = new List<Exception>();
                var callers = Enumerable.Range(0, 2).Select(i => Task.Run(() =>
                {
                    using var x = randn(1, 4);
                    while (!stop.IsCancellationRequested)
                    {
                        try { using var y = i == 0 ? model.call(x) : m.call(x); }
                        catch (Exception e) { lock (errors) errors.Add(e); return; }
                    }
                })).ToArray();
                Thread.Sleep(2);
                int fired = 0;
                using (m["act"].register_forward_hook((mod, x, y) => { Interlocked.Increment(ref fired); return null; }))
                {
                    using var x = randn(1, 4);
                    using var y = model.call(x);
                    Assert.That(fired, Is.GreaterThanOrEqualTo(1));
                }
                stop.Cancel();
                Task.WaitAll(callers);
                Assert.That(errors, Is.Empty, () => string.Join("\n", errors));
            }
        }
    }
}
