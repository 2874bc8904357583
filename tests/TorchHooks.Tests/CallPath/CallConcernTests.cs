using System;
using System.Linq;
using NUnit.Framework;
using TorchHooks.Tests.Build;
using TorchHooks;

namespace TorchHooks.Tests.CallPath
{
    /// <summary>The seam: every concern is one line of CallPath.Concerns, and its place gives PyTorch's order.</summary>
    public class CallConcernTests
    {
        [Test(Description = "Way in: tracing first, then forward pre-hooks, then the backward input wrap, then the precision region opens; way out (and failure): the region closes, then the forward hooks run, then the backward output wrap, tracing last (PyTorch's _call_impl)")]
        public void ConcernsRunInPyTorchsOrder()
        {
            var inOrder = TorchHooks.CallPath.InOrder.ToList();
            var outOrder = TorchHooks.CallPath.OutOrder.ToList();
            Assert.That(inOrder.IndexOf(ForwardHooksConcern.Instance), Is.LessThan(inOrder.IndexOf(BackwardHooksConcern.Instance)));
            Assert.That(inOrder.IndexOf(BackwardHooksConcern.Instance), Is.LessThan(inOrder.IndexOf(PrecisionConcern.Instance)));
            Assert.That(outOrder.IndexOf(PrecisionConcern.Instance), Is.LessThan(outOrder.IndexOf(ForwardHooksConcern.Instance)));
            Assert.That(outOrder.IndexOf(ForwardHooksConcern.Instance), Is.LessThan(outOrder.IndexOf(BackwardHooksConcern.Instance)));
            Assert.That(inOrder[0], Is.SameAs(TracingConcern.Instance));
            Assert.That(outOrder[^1], Is.SameAs(TracingConcern.Instance));
            var onPath = TorchHooks.CallPath.Concerns.Where(c => c.In != ConcernEntry.NoPlace).Select(c => c.Concern);
            Assert.That(inOrder, Is.EquivalentTo(onPath), "every concern with a place runs on the way in");
            Assert.That(outOrder, Is.EquivalentTo(onPath), "every concern with a place runs on the way out");
        }

        [Test(Description = "Each concern has its own frame slot")]
        public void EachConcernHasItsOwnSlot()
        {
            var slots = TorchHooks.CallPath.Concerns.Select(c => c.Concern.Slot).ToArray();
            Assert.That(slots, Is.EqualTo(Enumerable.Range(0, slots.Length).ToArray()));
        }

        [Test(Description = "No concern's source names another concern's type, and the facade's bracket names none: what one concern needs from another goes through the seam (outer-call steps, BackwardEvents)")]
        public void ConcernsNeverNameEachOther()
        {
            var src = System.IO.Path.Combine(BuildTestSupport.RepoRoot, "src", "TorchHooks");
            var concerns = TorchHooks.CallPath.Concerns.Select(c => c.Concern.GetType()).ToList();
            var files = System.IO.Directory.GetFiles(src, "*.cs", System.IO.SearchOption.AllDirectories)
                .ToDictionary(f => System.IO.Path.GetRelativePath(src, f).Replace('\\', '/'), System.IO.File.ReadAllText);
            string Folder(string rel) => rel.Contains('/') ? rel.Substring(0, rel.LastIndexOf('/')) : "";
            // A concern's folder: where its class is declared.
            var home = concerns.ToDictionary(t => t, t => Folder(files.Single(f => f.Value.Contains($"class {t.Name} ")).Key));
            var problems = new System.Collections.Generic.List<string>();
            foreach (var (rel, text) in files)
            {
                if (rel == "CallPath/CallPath.cs") continue;   // the one list of concerns
                var named = concerns.Where(t => System.Text.RegularExpressions.Regex.IsMatch(text, $@"\b{t.Name}\b")).ToList();
                if (rel.StartsWith("CallPath/", StringComparison.Ordinal))
                {
                    if (named.Count > 0) problems.Add($"{rel} (the seam) names {string.Join(", ", named.Select(t => t.Name))}");
                    continue;
                }
                // A file in a concern's folder names no concern of another folder.
                if (!home.ContainsValue(Folder(rel))) continue;
                var foreign = named.Where(t => home[t] != Folder(rel)).ToList();
                if (foreign.Count > 0) problems.Add($"{rel} names {string.Join(", ", foreign.Select(t => t.Name))}");
            }
            Assert.That(problems, Is.Empty);
        }

        [Test(Description = "Every global hook kind registers itself: ModuleHooks.Handles and RemoveAll see forward pre-, forward, backward pre- and full backward hooks")]
        public void GlobalHookKindsRegisterThemselves()
        {
            var handles = ModuleHooks.Handles;   // makes every kind's list
            Assert.That(HookList.GlobalKinds, Is.SupersetOf(new[] { "forward pre-hooks", "forward hooks", "backward pre-hooks", "full backward hooks" }));
            int before = handles.Count;
            var made = new[]
            {
                ModuleHooks.register_module_forward_pre_hook((m, x) => null),
                ModuleHooks.register_module_forward_hook((m, x, y) => null),
                ModuleHooks.register_module_full_backward_pre_hook((m, g) => null),
                ModuleHooks.register_module_full_backward_hook((m, gi, go) => null),
            };
            try
            {
                Assert.That(ModuleHooks.Handles, Is.SupersetOf(made));
                Assert.That(ModuleHooks.Handles.Count, Is.EqualTo(before + made.Length));
            }
            finally { foreach (var h in made) h.remove(); }
            Assert.That(ModuleHooks.Handles.Count, Is.EqualTo(before));
        }
    }
}
