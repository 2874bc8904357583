using System.Collections.Generic;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.Tests.Hooks;

/// <summary>
/// The forms a new user writes for "where am I" inside a hook (issue 20, item 11): <c>ModuleCallInfo.Current?.Path</c>
/// did not compile while ModuleCallInfo was a struct; as a class, it, <c>Current.Path</c> and <c>CurrentOrNull?.Path</c> all work.
/// </summary>
[TestFixture]
public class ModuleCallInfoFormsTests
{
    [TearDown]
    public void Clean() { ModuleHooks.RemoveAll(); ThreadCallState.Reset(); }

    [Test]
    public void Current_with_null_conditional_access_compiles_and_gives_the_path_inside_a_hook()
    {
        var m = nn.Sequential(("enc", nn.Linear(2, 2)), ("dec", nn.Linear(2, 2))).WithHooks();
        var seen = new List<string?>();
        using var h = m["dec"].register_forward_hook((mod, x, y) =>
        {
            seen.Add(ModuleCallInfo.Current.Path);
            seen.Add(ModuleCallInfo.Current?.Path);
            seen.Add(ModuleCallInfo.CurrentOrNull?.Path);
            return null;
        });
        using var input = ones(1, 2);
        using (m.call(input)) { }
        Assert.That(seen, Is.EqualTo(new[] { "dec", "dec", "dec" }));
        Assert.That(ModuleCallInfo.CurrentOrNull?.Path, Is.Null);
    }
}
