using System.Linq;
using System.Reflection;
using NUnit.Framework;
using TorchSharp;

namespace TorchHooks.Tests.Facade
{
    /// <summary>The generated arity family (src/TorchHooks.Generators) covers every TorchSharp forward arity.</summary>
    public class ArityFamilyTests
    {
        private static int[] TorchSharpArities() => typeof(torch.nn.Module).Assembly.GetTypes()
            .Where(t => t.IsGenericTypeDefinition && t.Namespace == typeof(torch.nn.Module).Namespace && t.Name.StartsWith("Module`", System.StringComparison.Ordinal))
            .Select(t => t.GetGenericArguments().Length - 1).OrderBy(n => n).ToArray();

        [Test(Description = "One facade, WithHooks, At and dispatcher installer per TorchSharp Module<...> arity")]
        public void EveryForwardArityHasItsFamily()
        {
            var arities = TorchSharpArities();
            Assert.That(arities, Is.EqualTo(new[] { 1, 2, 3, 4, 5, 6 }), "TorchSharp's Module<...> classes");
            var lib = typeof(IHookedModule).Assembly;
            foreach (var n in arities)
            {
                Assert.That(lib.GetType($"TorchHooks.HookedModule`{n + 1}"), Is.Not.Null, $"facade for {n} inputs");
                Assert.That(lib.GetType($"TorchHooks.TypedHookPoint`{n + 1}"), Is.Not.Null, $"typed hook point for {n} inputs");
                Assert.That(typeof(Dispatchers).GetMethod($"Create{n}", BindingFlags.NonPublic | BindingFlags.Static), Is.Not.Null, $"hook point creator for {n} inputs");
                Assert.That(typeof(Dispatchers).GetMethod($"Attach{n}", BindingFlags.NonPublic | BindingFlags.Static), Is.Not.Null, $"dispatcher attacher for {n} inputs");
            }
            var ext = typeof(ModuleExtensions).GetMethods(BindingFlags.Public | BindingFlags.Static);
            Assert.That(ext.Count(m => m.Name == "WithHooks"), Is.EqualTo(arities.Length));
            Assert.That(ext.Count(m => m.Name == "At"), Is.EqualTo(arities.Length));
        }
    }
}
