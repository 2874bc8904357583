using System;
using System.IO;
using System.Linq;
using NUnit.Framework;
using TorchHooks.Tests.Build;

namespace TorchHooks.Tests.Native;

/// <summary>
/// The runtime native-load fix (<see cref="NativeLoading"/>): the per-user cache of load-fixed copies and its
/// safety checks. The end-to-end loads are in ConsumerTests (an app without the build step) and NotebookTests
/// (real Jupyter kernels).
/// </summary>
[TestFixture]
[NonParallelizable]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
[Platform("Linux")]
public class NativeLoadingTests
{
    private BuildTestSupport.TempDir _dir = null!;
    private static readonly byte[] Library = Enumerable.Range(0, 4096).Select(i => (byte)(i * 7)).ToArray();

    [SetUp]
    public void SetUp() => _dir = new BuildTestSupport.TempDir("torchhooks-native-cache");

    [TearDown]
    public void TearDown()
    {
        foreach (var d in Directory.GetDirectories(_dir.Path, "*", SearchOption.AllDirectories))
            File.SetUnixFileMode(d, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        _dir.Dispose();
    }

    private string Root()
    {
        string root = _dir.Sub("cache");
        File.SetUnixFileMode(root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return root;
    }

    [Test]
    public void In_this_test_host_the_library_is_already_loaded_or_needs_nothing()
    {
        using var t = TorchSharp.torch.ones(1);   // the test host loads the build-fixed output copy
        var r = NativeLoading.Prepare();
        Assert.That(r.Action, Is.AnyOf(NativeLoadAction.AlreadyLoaded, NativeLoadAction.NotNeeded), r.ToString());
        Assert.That(NativeLoading.Prepare(), Is.SameAs(r), "the outcome is computed once per process");
    }

    [Test]
    public void Cached_copy_is_private_and_holds_exactly_the_fixed_bytes()
    {
        string copy = NativeLoading.CachedCopy(Library, Root());
        Assert.That(File.ReadAllBytes(copy), Is.EqualTo(Library));
        Assert.That(copy, Does.StartWith(Path.Combine(_dir.Path, "cache", "torchhooks", "native")));
        for (var d = new DirectoryInfo(Path.GetDirectoryName(copy)!); d.FullName != Path.Combine(_dir.Path, "cache"); d = d.Parent!)
            Assert.That(File.GetUnixFileMode(d.FullName) & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead),
                Is.EqualTo((UnixFileMode)0), d.FullName);
        Assert.That(File.GetUnixFileMode(copy) & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite), Is.EqualTo((UnixFileMode)0));
    }

    [Test]
    public void An_intact_copy_is_reused_without_rewriting()
    {
        string root = Root();
        string copy = NativeLoading.CachedCopy(Library, root);
        var written = File.GetLastWriteTimeUtc(copy).AddMinutes(-5);
        File.SetLastWriteTimeUtc(copy, written);
        Assert.That(NativeLoading.CachedCopy(Library, root), Is.EqualTo(copy));
        Assert.That(File.GetLastWriteTimeUtc(copy), Is.EqualTo(written));
    }

    [Test]
    public void A_tampered_copy_is_rebuilt_before_it_is_loaded()
    {
        string root = Root();
        string copy = NativeLoading.CachedCopy(Library, root);
        var bytes = File.ReadAllBytes(copy);
        bytes[100] ^= 0xFF;
        File.WriteAllBytes(copy, bytes);
        Assert.That(NativeLoading.CachedCopy(Library, root), Is.EqualTo(copy));
        Assert.That(File.ReadAllBytes(copy), Is.EqualTo(Library));
        Assert.That(Directory.GetFiles(Path.GetDirectoryName(copy)!), Has.Length.EqualTo(1), "no temporary file is left behind");
    }

    [Test]
    public void A_cache_folder_other_users_can_write_is_refused_naming_it_and_the_fix()
    {
        string root = Root();
        string copy = NativeLoading.CachedCopy(Library, root);
        string torchhooks = Path.Combine(root, "torchhooks");
        File.SetUnixFileMode(torchhooks, (UnixFileMode)0x1FF); // 0777
        var e = Assert.Throws<InvalidOperationException>(() => NativeLoading.CachedCopy(Library, root))!;
        Assert.That(e.Message, Does.Contain(torchhooks).And.Contain("can be written by other users").And.Contain("chmod go-w"));
        Assert.That(File.ReadAllBytes(copy), Is.EqualTo(Library));
    }

    [Test]
    public void A_symbolic_link_in_the_cache_is_refused()
    {
        string root = Root();
        string elsewhere = _dir.Sub("elsewhere");
        File.SetUnixFileMode(elsewhere, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Directory.CreateSymbolicLink(Path.Combine(root, "torchhooks"), elsewhere);
        var e = Assert.Throws<InvalidOperationException>(() => NativeLoading.CachedCopy(Library, root))!;
        Assert.That(e.Message, Does.Contain("not a plain folder"));
    }

    [Test]
    public void A_cache_folder_owned_by_another_user_is_refused()
    {
        if (UnixSecurity.Stat(_dir.Path).Owner != 0) Assert.Ignore("needs root to hand a folder to another user");
        string root = Root();
        NativeLoading.CachedCopy(Library, root);
        string native = Path.Combine(root, "torchhooks", "native");
        var chown = BuildTestSupport.Run("chown", "65534", native);   // nobody
        Assert.That(chown.ExitCode, Is.EqualTo(0), chown.Output);
        var e = Assert.Throws<InvalidOperationException>(() => NativeLoading.CachedCopy(Library, root))!;
        Assert.That(e.Message, Does.Contain(native).And.Contain("belongs to user id 65534"));
    }

    [Test]
    public void The_failure_message_names_the_cause_and_the_fix()
    {
        var r = NativeLoading.Prepare();
        string message = NativeLoading.FailureMessage(r);
        Assert.That(message, Does.Contain("GLIBCXX_3.4.32").And.Contain("not a missing package")
            .And.Contain("#r \"nuget: libtorch-cpu-linux-x64, 2.10.0\"").And.Contain("NativeLoading.Prepare()"));
    }
}
