# SPDX-License-Identifier: Apache-2.0
"""sov-s3 with the command-line clients people use: s3cmd (mb, put, ls, la, info, get, del, rb,
multipart put) and `aws s3` (mb, cp, ls, sync both ways, rm --recursive, rb), plus a clean
SIGTERM stop that keeps everything."""
import hashlib
import os
import socket
import subprocess

from conftest import BIN, aws_cli_env, clean_env, list_all_keys, s3cmd_config, wait_for_file


def tree_digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_s3cmd_workflow(s3, tmp_path):
    cfg = s3cmd_config(s3, tmp_path)

    def s3cmd(*args, ok=True):
        p = subprocess.run(["/usr/bin/s3cmd", "-c", str(cfg), *map(str, args)],
                           capture_output=True, text=True, env=clean_env(), timeout=300)
        if ok:
            assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p

    small, big = tmp_path / "small.txt", tmp_path / "big.bin"
    small.write_text("hello from s3cmd\n")
    big_data = os.urandom(12 * 1024 * 1024 + 99)  # three 5 MiB multipart chunks
    big.write_bytes(big_data)
    s3cmd("mb", "s3://cmd-bucket")
    assert "s3://cmd-bucket" in s3cmd("ls").stdout
    s3cmd("put", small, "s3://cmd-bucket/docs/small.txt")
    s3cmd("put", big, "s3://cmd-bucket/big.bin")
    out = s3cmd("ls", "s3://cmd-bucket").stdout
    assert any(line.split() == ["DIR", "s3://cmd-bucket/docs/"] for line in out.splitlines())
    assert "s3://cmd-bucket/big.bin" in out
    out = s3cmd("ls", "--recursive", "s3://cmd-bucket").stdout
    assert "s3://cmd-bucket/docs/small.txt" in out and str(len(big_data)) in out
    assert "s3://cmd-bucket/big.bin" in s3cmd("la").stdout
    info = s3cmd("info", "s3://cmd-bucket/docs/small.txt").stdout
    assert hashlib.md5(small.read_bytes()).hexdigest() in info
    assert "eu-central-1" in s3cmd("info", "s3://cmd-bucket").stdout
    head = s3.client().head_object(Bucket="cmd-bucket", Key="big.bin")
    assert head["ETag"].endswith('-3"') and head["ContentLength"] == len(big_data)
    got = tmp_path / "got"
    got.mkdir()
    s3cmd("get", "s3://cmd-bucket/docs/small.txt", got / "small.txt")
    s3cmd("get", "s3://cmd-bucket/big.bin", got / "big.bin")
    assert (got / "small.txt").read_bytes() == small.read_bytes()
    assert (got / "big.bin").read_bytes() == big_data
    # rb refuses a bucket that still has objects.
    assert s3cmd("rb", "s3://cmd-bucket", ok=False).returncode != 0
    assert list_all_keys(s3.client(), "cmd-bucket") == ["big.bin", "docs/small.txt"]
    s3cmd("del", "s3://cmd-bucket/docs/small.txt")
    s3cmd("del", "s3://cmd-bucket/big.bin")
    assert s3cmd("ls", "s3://cmd-bucket").stdout.strip() == ""
    s3cmd("rb", "s3://cmd-bucket")
    assert "cmd-bucket" not in s3cmd("ls").stdout
    assert s3.client().list_buckets()["Buckets"] == []


def test_aws_s3_workflow(s3, tmp_path):
    env = aws_cli_env(s3, tmp_path)

    def aws(*args, ok=True):
        p = subprocess.run(["/usr/bin/aws", "--endpoint-url", s3.url, "s3", *map(str, args)],
                           capture_output=True, text=True, env=env, timeout=300)
        if ok:
            assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p

    src = tmp_path / "site"
    (src / "css").mkdir(parents=True)
    (src / "img" / "deep" / "er").mkdir(parents=True)
    (src / "index.html").write_text("<h1>hi</h1>\n")
    (src / "css" / "a.css").write_text("body{}\n")
    (src / "img" / "deep" / "er" / "pic.bin").write_bytes(os.urandom(200_000))
    (src / "img" / "ü n i.txt").write_text("unicode name\n")
    (src / "big.bin").write_bytes(os.urandom(9 * 1024 * 1024))  # multipart in cp/sync
    aws("mb", "s3://aws-bucket")
    assert "aws-bucket" in aws("ls").stdout
    aws("cp", "--no-progress", src / "index.html", "s3://aws-bucket/single/index.html")
    out = aws("ls", "s3://aws-bucket/single/").stdout
    assert "index.html" in out and str(len("<h1>hi</h1>\n")) in out
    out = aws("sync", "--no-progress", src, "s3://aws-bucket/site").stdout
    assert out.count("upload:") == 5
    assert list_all_keys(s3.client(), "aws-bucket", Prefix="site/") == sorted(
        ["site/index.html", "site/css/a.css", "site/img/deep/er/pic.bin", "site/img/ü n i.txt",
         "site/big.bin"], key=lambda k: k.encode())
    assert s3.client().get_object(Bucket="aws-bucket", Key="site/index.html")[
        "ContentType"] == "text/html"
    # A second sync uploads nothing; a changed file is uploaded again.
    assert "upload:" not in aws("sync", "--no-progress", src, "s3://aws-bucket/site").stdout
    (src / "css" / "a.css").write_text("body{color:red}\n")
    out = aws("sync", "--no-progress", src, "s3://aws-bucket/site").stdout
    assert out.count("upload:") == 1 and "a.css" in out
    dst = tmp_path / "down"
    aws("sync", "--no-progress", "s3://aws-bucket/site", dst)
    assert tree_digest(dst) == tree_digest(src)
    out = aws("ls", "--recursive", "s3://aws-bucket").stdout
    assert len(out.strip().splitlines()) == 6
    assert "PRE site/" in aws("ls", "s3://aws-bucket").stdout
    assert aws("rb", "s3://aws-bucket", ok=False).returncode != 0
    out = aws("rm", "--recursive", "s3://aws-bucket/site").stdout
    assert out.count("delete:") == 5
    assert list_all_keys(s3.client(), "aws-bucket") == ["single/index.html"]
    aws("rm", "s3://aws-bucket/single/index.html")
    aws("rb", "s3://aws-bucket")
    assert s3.client().list_buckets()["Buckets"] == []
    # Errors reach the user as such.
    p = aws("ls", "s3://no-such-bucket", ok=False)
    assert p.returncode != 0 and "NoSuchBucket" in p.stderr


def test_sigterm_stops_cleanly_and_keeps_everything(s3):
    c = s3.client()
    c.create_bucket(Bucket="kept")
    objs = {f"k{i}": os.urandom(1000 * i + 1) for i in range(20)}
    for k, v in objs.items():
        c.put_object(Bucket="kept", Key=k, Body=v)
    assert s3.stop() == 0
    s3.start()
    c = s3.client()
    for k, v in objs.items():
        assert c.get_object(Bucket="kept", Key=k)["Body"].read() == v


def test_listen_flag_overrides_config(start_s3):
    s3 = start_s3()
    c = s3.client()
    c.create_bucket(Bucket="moved")
    assert s3.stop() == 0
    # Pick a free port, then hand it to the daemon on the command line.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    s3.port_file.unlink(missing_ok=True)
    s3.proc = subprocess.Popen([str(BIN / "sov-s3"), "--config", str(s3.cfg), "--port-file",
                                str(s3.port_file), "--listen", f"127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=clean_env())
    s3.port = int(wait_for_file(s3.port_file, s3.proc))
    assert s3.port == port
    assert [b["Name"] for b in s3.client().list_buckets()["Buckets"]] == ["moved"]
    assert s3.stop() == 0


ODD_NAMES = ["plus+and space.txt", "ümlaut ß.txt", "bang!tilde~star*.txt", "paren(1)'q'.txt",
             "amp&dollar$at@eq=.txt", "semi;colon,comma.txt", "percent%20not-a-space.txt",
             "hash#brackets[1].txt"]


def test_clients_agree_on_odd_file_names(s3, tmp_path):
    """Each client percent-encodes paths and queries its own way; the signature must match
    for every one of them, and all three must see the same keys."""
    src = tmp_path / "odd"
    (src / "dir with space").mkdir(parents=True)
    for n in ODD_NAMES:
        (src / "dir with space" / n).write_bytes(n.encode() * 10)
    c = s3.client()
    c.create_bucket(Bucket="odd-names")
    env = aws_cli_env(s3, tmp_path)
    aws = ["/usr/bin/aws", "--endpoint-url", s3.url, "s3"]
    cfg = s3cmd_config(s3, tmp_path)
    s3cmd = ["/usr/bin/s3cmd", "-c", str(cfg)]
    for i, n in enumerate(ODD_NAMES):
        f = src / "dir with space" / n
        if i % 2:
            cmd = aws + ["cp", "--no-progress", str(f), f"s3://odd-names/aws/dir with space/{n}"]
            e = env
        else:
            cmd = s3cmd + ["put", str(f), f"s3://odd-names/cmd/dir with space/{n}"]
            e = clean_env()
        p = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=120)
        assert p.returncode == 0, (n, p.stderr)
    want = sorted([f"aws/dir with space/{n}" for n in ODD_NAMES[1::2]]
                  + [f"cmd/dir with space/{n}" for n in ODD_NAMES[0::2]], key=str.encode)
    assert list_all_keys(c, "odd-names") == want
    # Listing with a prefix that needs encoding, from both CLIs.
    p = subprocess.run(aws + ["ls", "s3://odd-names/cmd/dir with space/"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0 and all(n in p.stdout for n in ODD_NAMES[0::2]), p.stderr
    p = subprocess.run(s3cmd + ["ls", "s3://odd-names/aws/dir with space/"],
                       capture_output=True, text=True, env=clean_env(), timeout=120)
    assert p.returncode == 0 and all(n in p.stdout for n in ODD_NAMES[1::2]), p.stderr
    # Each client downloads what the other uploaded.
    out = tmp_path / "out"
    out.mkdir()
    for key in want:
        n = key.rsplit("/", 1)[1]
        if key.startswith("aws/"):
            cmd, e = s3cmd + ["get", f"s3://odd-names/{key}", str(out / n)], clean_env()
        else:
            cmd, e = aws + ["cp", "--no-progress", f"s3://odd-names/{key}", str(out / n)], env
        p = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=120)
        assert p.returncode == 0, (key, p.stderr)
        assert (out / n).read_bytes() == n.encode() * 10, key


def test_second_daemon_on_the_same_data_dir_is_refused(start_s3):
    """Two processes writing one store would each trust their own view of it. The second must
    exit with an error naming the data dir, and the first keeps serving. (Not S3 behaviour: an
    operational guard, like systemd's and PostgreSQL's lock on their state directory.)"""
    s3 = start_s3()
    c = s3.client()
    c.create_bucket(Bucket="owned")
    port_file = s3.tmp / "second.port"
    p = subprocess.Popen([str(BIN / "sov-s3"), "--config", str(s3.cfg), "--port-file",
                          str(port_file)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, env=clean_env())
    try:
        wait_for_file(port_file, p, timeout=20)
        started = True
    except RuntimeError:  # it exited, as it should
        started = False
    finally:
        if p.poll() is None:
            p.kill()
        err = p.communicate(timeout=20)[1]
    assert not started, "a second daemon serves the same data dir"
    assert p.returncode != 0 and str(s3.data_dir) in err, err
    assert [b["Name"] for b in c.list_buckets()["Buckets"]] == ["owned"]
    # After a kill -9 the lock does not outlive its holder.
    s3.kill()
    s3.start()
    assert [b["Name"] for b in s3.client().list_buckets()["Buckets"]] == ["owned"]
